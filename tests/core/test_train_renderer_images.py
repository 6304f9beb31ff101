"""``cli/train_renderer.py`` reads a folder of keyframes the user made: a damaged image, a caption saved in another
encoding or a folder that is not there stops it with one line naming the file, before any model loads (before: a
traceback from PIL or from the UTF-8 decoder, the file unnamed for a truncated PNG)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cli.train_renderer import MAX_CAPTION_BYTES, load_keyframes


def folder(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.new("CMYK", (50, 50), (10, 20, 30, 40)).save(tmp_path / "b.jpg")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)).save(tmp_path / "c.png")
    (tmp_path / "a.txt").write_text("Ava at the window\n", encoding="utf-8")
    return tmp_path


def test_images_of_any_mode_are_read_at_the_size_with_their_captions(tmp_path):
    images, captions = load_keyframes(str(folder(tmp_path)), (32, 16), "a keyframe")
    assert tuple(images.shape) == (3, 16, 32, 3) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert captions == ["Ava at the window", "a keyframe", "a keyframe"]


def test_a_caption_saved_with_a_byte_order_mark_reads_without_it(tmp_path):
    """Windows Notepad saves UTF-8 with a byte-order mark; it used to start the caption the text encoder read."""
    (folder(tmp_path) / "b.txt").write_text("Bo on the stairs", encoding="utf-8-sig")
    assert load_keyframes(str(tmp_path), (32, 16), "a keyframe")[1] == ["Ava at the window", "Bo on the stairs", "a keyframe"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10), "d.png: cannot be read as an image"),
    (lambda d: (d / "e.jpg").write_text("not a picture"), "e.jpg: cannot be read as an image"),
    (lambda d: (d / "a.txt").write_bytes("Caf\xe9".encode("latin-1")), "a.txt: the caption is not UTF-8 text"),
    (lambda d: (d / "a.txt").write_text("x" * (MAX_CAPTION_BYTES + 1)),
     "a.txt: the caption is 65,537 bytes, more than the limit of 65,536 bytes; a caption is a sentence or two"),
])
def test_a_damaged_image_or_caption_stops_the_command_naming_it(tmp_path, damage, message):
    damage(folder(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        load_keyframes(str(tmp_path), (32, 16))
    assert message in str(stopped.value) and str(tmp_path) in str(stopped.value)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"--images: .*nowhere is not a folder"):
        load_keyframes(str(tmp_path / "nowhere"), (32, 16))
