"""Reference photos are read as the picture they hold: greyscale wider than 8 bits not clipped to white or black, and
no format that would run another program to decode it."""

import numpy as np
import pytest
from PIL import Image

from moviedreamer_core.script.references import load_image_file


@pytest.mark.parametrize("kind", ["png16", "tif16", "tif_float"])
def test_a_wide_greyscale_reference_reads_as_its_8_bit_picture(tmp_path, kind):
    grey8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # a ramp 0..252
    if kind == "png16":
        path, image = tmp_path / "r.png", Image.fromarray(grey8.astype(np.uint16) * 257)
    elif kind == "tif16":
        path, image = tmp_path / "r.tif", Image.fromarray(grey8.astype(np.uint16) * 257)
    else:
        path, image = tmp_path / "r.tif", Image.fromarray(grey8.astype(np.float32) / 255.0)
    image.save(path)
    rgb = load_image_file(str(path))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[..., 0].astype(int) - grey8).max() <= 1, rgb[0, ::8, 0]


def test_an_eps_file_named_as_a_photo_is_not_opened(tmp_path):
    """Pillow hands EPS to Ghostscript whatever the file is called; a reference photo is never EPS, so a "portrait.png"
    holding one is an unreadable image, refused from its header before anything could run it."""
    from moviedreamer_core.script.references import check_reference_file

    Image.new("RGB", (64, 64), (200, 120, 40)).save(tmp_path / "portrait.png", format="EPS")
    path, problem, pixels = check_reference_file(str(tmp_path), "portrait.png")
    assert path is None and "not a readable image" in problem, problem
    with pytest.raises(Exception, match="cannot identify image file"):
        load_image_file(str(tmp_path / "portrait.png"))
