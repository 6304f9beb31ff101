"""``python -m moviedreamer_core.data build --clip-vision DIR --text-encoder DIR``: an encoder folder that cannot be
used is the command's usage error (exit 2, argparse's) naming the option and the file, as a missing folder already
was. Before, each of these ended in a traceback of transformers, json or safetensors (a RecursionError for JSON nested
thousands deep, a whole ``/dev/zero`` read into memory for a huge file).

The folders are a tiny random ``CLIPVisionModelWithProjection`` saved by transformers, and the MiniLM folder the pip
package ships (linked, file by file), each damaged one way."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from moviedreamer_core.script_encoding import TextEncoder
from moviedreamer_core.spaces import EmbeddingSpace

#: Far past Python's recursion limit, as the other hostile-input tests nest.
DEEP = "[" * 100_000 + "]" * 100_000


def hash_text_encoder() -> TextEncoder:
    """A stand-in sentence encoder (the text folder is not what these tests are about when the vision one is)."""

    def encode(texts):
        rows = [torch.randn(8, generator=torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)))
                for t in texts]
        return torch.stack(rows) if rows else torch.zeros(0, 8)

    return TextEncoder(encode=encode, space=EmbeddingSpace("test.hash", 8))


#: Imported by name from the pack folder, in-process and in the fresh interpreter alike.
TEXT_STAND_IN = "tests.core.test_data_encoder_folders:hash_text_encoder"


@pytest.fixture(scope="module")
def vision_folder(tmp_path_factory) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("encoders") / "clip_vision"
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=16)).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}')
    return folder


def _copy_vision(vision_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "clip"
    shutil.copytree(vision_folder, folder)
    return folder


def _minilm_copy(tmp_path: Path) -> Path:
    """The shipped MiniLM folder, each file linked, so one can be replaced."""
    from moviedreamer_core.sentence_encoders import minilm_folder

    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in os.listdir(minilm_folder()):
        os.symlink(os.path.join(minilm_folder(), name), folder / name)
    return folder


#: One byte past ``sentence_encoders.MAX_ENCODER_JSON_BYTES`` (checked in ``test_the_folders_as_they_are_meant_to_be_are_used``).
HUGE = 16 * 2**20 + 1


def _huge(path: Path) -> None:
    """A file one byte past the bound (sparse: nothing is written to disk)."""
    if path.is_symlink():
        path.unlink()
    with open(path, "wb") as f:
        f.truncate(HUGE)


def _write(path: Path, text: str) -> None:
    if path.is_symlink():
        path.unlink()
    path.write_text(text)


# damage -> (how the folder is damaged, the words after "<option> '<folder>': "); {f} is the folder as given
VISION_DAMAGES = {
    "no config.json": (lambda f: (f / "config.json").unlink(), "no config.json in it: not a transformers model folder"),
    "config.json not JSON": (lambda f: _write(f / "config.json", "{nope"),
                             "{f}/config.json is not valid JSON (line 1, column 2: Expecting property name"),
    "config.json nested too deeply": (lambda f: _write(f / "config.json", DEEP),
                                      "{f}/config.json is not valid JSON (nested too deeply)"),
    "config.json huge": (lambda f: _huge(f / "config.json"), "{f}/config.json is 16,777,217 bytes, more than the limit"),
    "config.json a list": (lambda f: _write(f / "config.json", "[]"), "{f}/config.json is not a JSON object (got list)"),
    "no safetensors weights": (lambda f: (f / "model.safetensors").unlink(),
                               "no model.safetensors in it (weights are read from safetensors files only)"),
    "preprocessor_config.json not JSON": (lambda f: _write(f / "preprocessor_config.json", "image_mean: [1, 2, 3]"),
                                          "{f}/preprocessor_config.json is not valid JSON (line 1, column 1"),
    "preprocessor_config.json nested too deeply": (lambda f: _write(f / "preprocessor_config.json", DEEP),
                                                   "{f}/preprocessor_config.json is not valid JSON (nested too deeply)"),
    "preprocessor_config.json huge": (lambda f: _huge(f / "preprocessor_config.json"),
                                      "{f}/preprocessor_config.json is 16,777,217 bytes, more than the limit"),
    "image_mean not 3 numbers": (lambda f: _write(f / "preprocessor_config.json", '{"image_mean": "0.5"}'),
                                 "{f}/preprocessor_config.json: image_mean must be 3 numbers (one per colour), got 0.5"),
    "image_std of a zero": (lambda f: _write(f / "preprocessor_config.json", '{"image_std": [0.5, 0, 0.5]}'),
                            "{f}/preprocessor_config.json: image_std must be 3 numbers above 0"),
}
TEXT_DAMAGES = {
    "modules.json not JSON": (lambda f: _write(f / "modules.json", '[{"type": "Normalize"'),
                              "{f}/modules.json is not valid JSON (line 1, column 22"),
    "modules.json nested too deeply": (lambda f: _write(f / "modules.json", DEEP),
                                       "{f}/modules.json is not valid JSON (nested too deeply)"),
    "modules.json huge": (lambda f: _huge(f / "modules.json"), "{f}/modules.json is 16,777,217 bytes, more than the limit"),
    "modules.json an object": (lambda f: _write(f / "modules.json", '{"0": {"type": "Normalize"}}'),
                               "{f}/modules.json: must be a JSON list of modules"),
    "config.json not JSON": (lambda f: _write(f / "config.json", ""),
                             "{f}/config.json is not valid JSON (line 1, column 1: Expecting value)"),
}


def _videos(tmp_path: Path) -> Path:
    """A videos folder with one film to build, whose bytes are never read: the encoders are loaded first."""
    videos = tmp_path / "videos"
    if not videos.is_dir():
        videos.mkdir()
        (videos / "film.mp4").write_bytes(b"not a video")
    return videos


def _refused(capsys, tmp_path, args) -> str:
    """Run the command in-process; assert it is a usage error (exit 2: argparse's usage, then one error line) and
    that nothing was built; the error line."""
    from moviedreamer_core.data.__main__ import main

    videos = _videos(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(["build", str(videos), str(tmp_path / "out"), "--quiet", *args])
    err = capsys.readouterr().err
    assert refused.value.code == 2, err
    assert "Traceback" not in err and err.startswith("usage: "), err
    line = err.strip().splitlines()[-1]
    assert line.startswith("python -m moviedreamer_core.data build: error: "), err
    assert not (tmp_path / "out" / "index.json").exists()
    return line


@pytest.mark.parametrize("damage", list(VISION_DAMAGES))
def test_a_clip_vision_folder_that_cannot_be_used_is_a_usage_error_naming_the_file(damage, vision_folder, tmp_path, capsys):
    folder = _copy_vision(vision_folder, tmp_path)
    spoil, words = VISION_DAMAGES[damage]
    spoil(folder)
    err = _refused(capsys, tmp_path, ["--clip-vision", str(folder), "--text-encoder", TEXT_STAND_IN])
    assert f"error: --clip-vision '{folder}': " + words.format(f=folder) in err, err
    assert not (tmp_path / "out").exists(), "refused before the output folder was made"


@pytest.mark.parametrize("damage", list(TEXT_DAMAGES))
def test_a_text_encoder_folder_that_cannot_be_used_is_a_usage_error_naming_the_file(damage, vision_folder, tmp_path, capsys):
    folder = _minilm_copy(tmp_path)
    spoil, words = TEXT_DAMAGES[damage]
    spoil(folder)
    err = _refused(capsys, tmp_path, ["--clip-vision", str(vision_folder), "--text-encoder", str(folder)])
    assert f"error: --text-encoder '{folder}': " + words.format(f=folder) in err, err


def test_a_folder_that_only_loading_finds_wrong_is_a_usage_error_naming_the_option(vision_folder, tmp_path, capsys):
    """What no small file tells: a damaged weights file (safetensors' ``SafetensorError``), a text folder without a
    tokenizer (transformers' ``ValueError``, several lines): one line naming the option, said when the encoders are
    loaded."""
    damaged = _copy_vision(vision_folder, tmp_path)
    (damaged / "model.safetensors").write_bytes(b"\xff" * 64)
    err = _refused(capsys, tmp_path, ["--clip-vision", str(damaged), "--text-encoder", TEXT_STAND_IN])
    assert f"error: --clip-vision '{damaged}': cannot be loaded (" in err, err
    # a vision folder given as the text encoder: config and weights are there, a tokenizer is not
    err = _refused(capsys, tmp_path, ["--clip-vision", str(vision_folder), "--text-encoder", str(vision_folder)])
    assert f"error: --text-encoder '{vision_folder}': cannot be loaded (" in err, err


def test_a_folder_that_only_loading_finds_wrong_is_named_with_worker_processes_too(vision_folder, tmp_path, capsys):
    """With ``--workers 2`` the encoders are loaded in the worker processes: an exception there broke the pool, and the
    build stopped with a ``BrokenProcessPool`` traceback that named neither the option nor the file. The same one line
    as with one process, exit 2."""
    damaged = _copy_vision(vision_folder, tmp_path)
    (damaged / "model.safetensors").write_bytes(b"\xff" * 64)
    (_videos(tmp_path) / "second.mp4").write_bytes(b"not a video either")  # two videos: two workers
    # the text encoder is MiniLM: a factory of this test module is not importable in a worker of a test session whose
    # in-process host put its own ``tests`` package first
    err = _refused(capsys, tmp_path, ["--clip-vision", str(damaged), "--text-encoder", "minilm", "--workers", "2"])
    assert f"error: --clip-vision '{damaged}': cannot be loaded (" in err and "BrokenProcessPool" not in err, err
    assert not (tmp_path / "out").exists(), "the empty folder the build made is removed"


def test_a_build_refused_when_loading_removes_only_the_empty_folders_it_made(vision_folder, tmp_path, capsys):
    """Found by an audit: a build refused when its encoders were loaded (after the folder checks passed) left the empty
    OUT folder it had made (and any parents it had made) behind. Now they are removed; a folder that was there before,
    and anything in it, is kept."""
    from moviedreamer_core.data.__main__ import main

    damaged = _copy_vision(vision_folder, tmp_path)
    (damaged / "model.safetensors").write_bytes(b"\xff" * 64)
    args = ["--quiet", "--clip-vision", str(damaged), "--text-encoder", TEXT_STAND_IN]
    videos = _videos(tmp_path)
    made = tmp_path / "made"
    for out, before in ((made / "by" / "the build", None), (tmp_path / "empty", "empty"), (tmp_path / "used", "used")):
        if before:
            out.mkdir()
        if before == "used":
            (out / "notes.txt").write_text("mine")
        with pytest.raises(SystemExit) as refused:
            main(["build", str(videos), str(out), *args])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and f"error: --clip-vision '{damaged}': cannot be loaded (" in err, err
        if before is None:
            assert not made.exists(), sorted(map(str, made.rglob("*")))
        else:
            assert out.is_dir(), before
            assert sorted(p.name for p in out.iterdir()) == ([] if before == "empty" else ["notes.txt"]), before
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"


def test_the_folders_as_they_are_meant_to_be_are_used(vision_folder, tmp_path):
    """The checks refuse nothing a working folder has: the tiny CLIP vision folder's mean and std are read, MiniLM's
    modules.json still makes its vectors normalised."""
    import numpy as np

    from moviedreamer_core.data.encoders import resolve_text_encoder, resolve_token_encoder
    from moviedreamer_core.sentence_encoders import MAX_ENCODER_JSON_BYTES

    assert HUGE == MAX_ENCODER_JSON_BYTES + 1

    tokens = resolve_token_encoder(str(vision_folder))
    assert tuple(tokens.encode([np.zeros((40, 48, 3), np.uint8)]).shape) == (1, 1, 16)
    text = resolve_text_encoder(str(_minilm_copy(tmp_path)))
    assert text.space.encoder.endswith(".mean_normalised")
    assert torch.allclose(text.encode(["a red room"]).norm(dim=-1), torch.ones(1), atol=1e-5)


@pytest.mark.parametrize("damage", ["config.json not JSON", "damaged weights"])
def test_the_readme_command_with_a_broken_clip_vision_folder_says_so_in_one_line(damage, vision_folder, tmp_path,
                                                                                 fresh_python):
    """The README's command, run as a user runs it (fresh interpreter, from the pack's folder): exit 2, one line naming
    the option and the file, no traceback."""
    videos = _videos(tmp_path)
    folder = _copy_vision(vision_folder, tmp_path)
    if damage == "damaged weights":
        (folder / "model.safetensors").write_bytes(b"\xff" * 64)
        expected = f"error: --clip-vision '{folder}': cannot be loaded ("
    else:
        (folder / "config.json").write_text("{nope")
        expected = f"error: --clip-vision '{folder}': {folder}/config.json is not valid JSON (line 1, column 2"
    proc = fresh_python.run(f"python -m moviedreamer_core.data build {videos} {tmp_path / 'my_dataset'} --clip-vision "
                            f"{folder} --text-encoder {TEXT_STAND_IN} --quiet", timeout=300,
                            env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and expected in proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]
