"""A damaged or foreign dataset movie file is refused when it is read, naming the file and the tensor at fault, and
the training commands say so in one line instead of failing deep inside training."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from moviedreamer_core.planner.inputs import CAMERAS, Story
from moviedreamer_core.planner.movie_checks import MovieFileError, check_movie_header
from moviedreamer_core.planner.train import load_movie, main as planner_train, save_movie, write_index

SPACES = dict(text_space={"encoder": "synthetic", "dim": 16}, identity_space={"encoder": "synthetic", "dim": 8},
              token_space={"source": "synthetic", "K": 2, "D": 8})


def a_story(n: int = 4) -> Story:
    g = torch.Generator().manual_seed(0)
    return Story(style=torch.randn(16, generator=g), descriptions=torch.randn(2, 16, generator=g),
                 identity_banks=[torch.randn(2, 8, generator=g), torch.randn(1, 8, generator=g)],
                 keyframe_text=torch.randn(n, 3, 16, generator=g), keyframe_characters=[(i % 2,) for i in range(n)],
                 tokens=torch.randn(n, 2, 8, generator=g), keyframe_camera=torch.tensor([0, 1, -1, 2])[:n],
                 reference_tokens=[torch.randn(1, 2, 8, generator=g), torch.zeros(0, 2, 8)])


def written(tmp_path, change=None, metadata=True) -> str:
    """A valid movie file, then ``change(tensors)`` applied and the file written again (its metadata kept)."""
    path = str(tmp_path / "film.safetensors")
    save_movie(path, a_story(), SPACES)
    if change is not None or not metadata:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
        if change is not None:
            change(tensors)
        save_file(tensors, path, metadata=meta if metadata else None)
    return path


#: (damage, message, found from the header alone: what the scale trainer checks of every film before its first step)
DAMAGE = [
    (lambda t: t.pop("descriptions"), "missing tensors ['descriptions']", True),
    (lambda t: t.update(tokens=torch.zeros(5, 2, 8)), "tokens has 5 keyframes, keyframe_text 4", True),
    (lambda t: t.update(keyframe_characters=torch.tensor([[0], [1], [7], [-1]])), "keyframe_characters names character 7", False),
    (lambda t: t.update(identity_offsets=torch.tensor([0, 3, 2])), "identity_offsets [0, 3, 2] must rise from 0 to 3", False),
    (lambda t: t.update(identity_offsets=torch.tensor([0, 3])), "identity_offsets has shape [2], expected [3]", True),
    (lambda t: t.update(identity_offsets=torch.tensor([0.0, 2.0, 3.0])), "identity_offsets has shape [3], expected [3] whole", True),
    (lambda t: t["tokens"].__setitem__((1, 0, 0), float("nan")), "tokens holds NaN or infinite values", False),
    (lambda t: t.update(keyframe_camera=torch.tensor([0, 1, len(CAMERAS), 2])), "keyframe_camera holds values outside", False),
    (lambda t: t.pop("reference_offsets"), "has reference_tokens without reference_offsets", True),
    (lambda t: t.update(reference_tokens=torch.zeros(1, 1, 8)), "reference_tokens are [1, 8] tokens, the keyframes' [2, 8]", True),
    (lambda t: t.update(reference_offsets=torch.tensor([0, 1, 2])), "reference_offsets [0, 1, 2] must rise from 0 to 1", False),
    (lambda t: t.update(style=torch.zeros(12)), "text sizes disagree: keyframe_text 16, descriptions 16, style 12", True),
    (lambda t: t.update(keyframe_text=torch.zeros(4, 16)), "keyframe_text has shape [4, 16], expected 3 dimensions", True),
]


@pytest.mark.parametrize("change, message, in_header", DAMAGE)
def test_a_damaged_movie_is_refused_naming_the_tensor(tmp_path, change, message, in_header):
    path = written(tmp_path, change)
    with pytest.raises(MovieFileError) as refused:
        load_movie(path)
    assert str(refused.value).startswith(path + ": ") and message in str(refused.value), str(refused.value)
    if in_header:
        with pytest.raises(MovieFileError) as refused:
            check_movie_header(path, SPACES)
        assert str(refused.value).startswith(path + ": ") and message in str(refused.value), str(refused.value)
    else:
        check_movie_header(path, SPACES)  # the values are checked when the film is read


def test_a_movie_of_other_spaces_or_no_movie_at_all_is_refused(tmp_path):
    story, meta = load_movie(written(tmp_path), SPACES)
    assert story.n_keyframes == 4 and story.n_characters == 2 and meta["token_space"] == SPACES["token_space"]
    other = {**SPACES, "text_space": {"encoder": "clip", "dim": 768}}
    with pytest.raises(MovieFileError, match=r"its texts have 16 values, the dataset's text space 768"):
        load_movie(written(tmp_path), other)
    with pytest.raises(MovieFileError, match=r"its tokens are \[2, 8\], the dataset's token space \[1, 1024\]"):
        load_movie(written(tmp_path), {**SPACES, "token_space": {"source": "clip", "K": 1, "D": 1024}})
    with pytest.raises(MovieFileError, match="not a MovieDreamer movie file"):
        load_movie(written(tmp_path, metadata=False))
    with pytest.raises(MovieFileError, match="not a MovieDreamer movie file"):
        check_movie_header(written(tmp_path, metadata=False))
    with pytest.raises(MovieFileError, match=r"its texts have 16 values, the dataset's text space 768"):
        check_movie_header(written(tmp_path), other)
    check_movie_header(written(tmp_path), SPACES)
    (tmp_path / "text.safetensors").write_text("not safetensors")
    with pytest.raises(MovieFileError, match="cannot be read as a safetensors movie file"):
        load_movie(str(tmp_path / "text.safetensors"))
    with pytest.raises(MovieFileError, match="cannot be read as a safetensors movie file"):
        load_movie(str(tmp_path / "missing.safetensors"))


def test_both_training_commands_name_the_damaged_film_and_exit_2(tmp_path, capsys):
    """``python -m moviedreamer_core.planner.train`` and ``python -m moviedreamer_core.train planner`` (before: a
    ``KeyError`` traceback, or a shape error at some training step)."""
    from moviedreamer_core.train.__main__ import main as scale_train

    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    for name in ("a", "b"):
        save_movie(str(data / "movies" / f"{name}.safetensors"), a_story(), SPACES)
    bad = written(tmp_path, lambda t: t.update(tokens=torch.zeros(4, 2, 9), reference_tokens=torch.zeros(1, 2, 9)))
    os.replace(bad, data / "movies" / "b.safetensors")
    write_index(str(data), ["movies/a.safetensors", "movies/b.safetensors"], SPACES)
    assert planner_train(["--data", str(data), "--out", str(tmp_path / "p.safetensors"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "b.safetensors: its tokens are [2, 9], the dataset's token space [2, 8]" in err, err
    assert scale_train(["planner", "--config", "tiny", f"data.path={data}", "train.steps=1", "data.val_fraction=0",
                        f"output.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "b.safetensors: its tokens are [2, 9], the dataset's token space [2, 8]" in err, err
    assert not (tmp_path / "p.safetensors").exists()
    with open(data / "index.json", encoding="utf-8") as f:
        assert json.load(f)["movies"] == ["movies/a.safetensors", "movies/b.safetensors"]


@pytest.mark.parametrize("config, message", [
    ('{"hidden_size": ', "c.json is not valid JSON (line 1, column 17: Expecting value)"),
    ("[64, 2]", "c.json is not a JSON object of PlannerConfig fields (got list)"),
    ('{"hiden_size": 8}', "c.json: unknown planner config fields: ['hiden_size']"),
    ('{"num_layers": 0}', "c.json: planner config num_layers must be a whole number from 1 to 1,024, got 0"),
    (b'{"hidden_size": "caf\xe9"}', "c.json is not UTF-8 text (byte 0xe9 at offset 20)"),
    (None, "--config tinyy: unknown planner preset 'tinyy' (choices: tiny, small, paper)"),
    (False, "none.json: no such file (--config is a preset name, tiny, small or paper, or a JSON file)"),
])
def test_a_bad_planner_config_is_one_line_and_exit_2(tmp_path, capsys, config, message):
    """``python -m moviedreamer_core.planner.train --config FILE``: a config that is not JSON, not an object, has an
    unknown or out-of-range field, or is not UTF-8 used to end in a traceback (``JSONDecodeError``, ``TypeError:
    'list' object is not a mapping``); a misspelt file name was called an unknown preset."""
    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    save_movie(str(data / "movies" / "a.safetensors"), a_story(), SPACES)
    write_index(str(data), ["movies/a.safetensors"], SPACES)
    name = {None: "tinyy", False: str(tmp_path / "none.json")}.get(config, str(tmp_path / "c.json"))
    if isinstance(config, (str, bytes)):
        (tmp_path / "c.json").write_bytes(config.encode() if isinstance(config, str) else config)
    assert planner_train(["--data", str(data), "--out", str(tmp_path / "p.safetensors"), "--config", name,
                          "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "p.safetensors").exists()


@pytest.mark.parametrize("text, message", [
    (b"train:\n  steps: caf\xe9\n", "c.yaml is not UTF-8 text (byte 0xe9 at offset 19)"),
    (b"- 1\n- 2\n", "c.yaml: a config is a mapping of sections (planner, data, train, ...), got list"),
    (b"train: [1,\n", "c.yaml: not valid YAML"),
])
def test_a_bad_scale_training_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    """``python -m moviedreamer_core.train planner --config FILE``: a YAML config in another encoding or that is a
    list used to end in a ``UnicodeDecodeError`` or ``TypeError`` traceback."""
    from moviedreamer_core.train.__main__ import main as scale_train

    (tmp_path / "c.yaml").write_bytes(text)
    assert scale_train(["planner", "--config", str(tmp_path / "c.yaml"), f"output.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    from moviedreamer_core.planner.train import config_file_fields
    from moviedreamer_core.train.config import load_config

    (tmp_path / "c.json").write_text('{"hidden_size": 32}', encoding="utf-8-sig")
    assert config_file_fields(str(tmp_path / "c.json")) == {"hidden_size": 32}
    (tmp_path / "c.yaml").write_text("train:\n  steps: 7\n", encoding="utf-8-sig")
    assert load_config(str(tmp_path / "c.yaml")).train.steps == 7
