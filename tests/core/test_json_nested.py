"""JSON nested thousands deep ("[[[[...]]]]") in a file, a file's metadata or a message from outside fails the way that
reader fails for any other malformed JSON, not with Python's RecursionError (which is not a ValueError: a reader
catching ValueError let it through as a traceback). ``text_files.loads_json`` makes it a ValueError; the readers here
are those that did not catch it (planner and renderer files: ``test_model_metadata_nested.py``; manifests:
``test_manifest_hostile.py``; scripts, workflows, the validation route: ``test_script_hostile.py``,
``test_queue_cli.py``, ``tests/host/test_server.py``; the distributed inputs and a worker's payload:
``test_distribution.py``; the queue command's websocket: ``test_queue_cli.py``; the toy UNet file:
``tests/host/test_toycinema.py``)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

#: Far past Python's recursion limit (1,000 by default), as the other hostile-input tests nest.
DEEP = "[" * 100_000 + "]" * 100_000


def test_loads_json_makes_deep_nesting_a_value_error_and_reads_the_rest_as_json_does():
    from moviedreamer_core.text_files import NestedTooDeeply, loads_json

    with pytest.raises(NestedTooDeeply, match="nested too deeply"):  # a ValueError a reader can tell apart
        loads_json(DEEP)
    assert issubclass(NestedTooDeeply, ValueError)
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(('{"a":' * 5000 + "1" + "}" * 5000).encode())
    with pytest.raises(json.JSONDecodeError):
        loads_json("{nope")
    for text in ('{"a": [1, 2.5, null, "\\u00e9"]}', b'[true]', "[" * 100 + "]" * 100):
        assert loads_json(text) == json.loads(text)


# ------------------------------------------------------------------------------------------ dataset folders


def _dataset_with_records(tmp_path, records: dict) -> str:
    """A dataset folder whose ``movies/`` holds one good film and its record, and the given extra records."""
    from moviedreamer_core.data.store import MOVIES

    out = tmp_path / "data"
    (out / MOVIES).mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(out / MOVIES / "good.safetensors"))
    (out / MOVIES / "good.json").write_text(json.dumps({"movie": f"{MOVIES}/good.safetensors", "source": "good.mp4",
                                                        "stamp": {"size": 1, "mtime_ns": 2}}))
    for name, text in records.items():
        (out / MOVIES / f"{name}.json").write_text(text)
    return str(out)


@pytest.mark.parametrize("text", [DEEP, '{"movie": ' + DEEP + "}", "{cut short by a kill", "[]",
                                  '{"movie": 5, "source": ["bad.mp4"], "stamp": {"size": 1, "mtime_ns": 2}}'],
                         ids=["deep", "deep inside", "cut short", "a list", "movie and source not text"])
def test_a_movie_record_nested_too_deeply_or_not_an_object_is_no_record(tmp_path, text):
    """``data build`` reads a dataset folder's ``movies/<name>.json`` records to skip finished films, list them in the
    index and keep names: a damaged record is no record (the film is built again), nested thousands deep as well
    (before: RecursionError, the build stopped with a traceback), and one that is not an object too (before:
    ``AttributeError: 'list' object has no attribute 'get'``)."""
    from moviedreamer_core.data.store import finished_movies, is_finished, movie_names

    out = _dataset_with_records(tmp_path, {"bad": text})
    assert finished_movies(out) == ["movies/good.safetensors"]
    assert not is_finished(out, "bad", {"size": 1, "mtime_ns": 2})
    assert is_finished(out, "good", {"size": 1, "mtime_ns": 2})
    assert movie_names(["bad.mp4", "bad.mkv"], out) == {"bad.mp4": "bad", "bad.mkv": "bad-" + _digest("bad.mkv")}


def _digest(rel: str) -> str:
    import hashlib

    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:8]


def test_a_dataset_film_whose_metadata_is_nested_too_deeply_is_refused_as_malformed_metadata(tmp_path):
    """A film's ``moviedreamer_movie`` metadata nested thousands deep is "not JSON", as malformed metadata is; before,
    the RecursionError was reported as "cannot be read as a safetensors movie file", which it is."""
    from moviedreamer_core.planner.movie_checks import MovieFileError, check_movie_header

    for name, meta in (("deep", DEEP), ("malformed", "{nope")):
        path = str(tmp_path / f"{name}.safetensors")
        save_file({"x": torch.zeros(1)}, path, metadata={"moviedreamer_movie": meta})
        with pytest.raises(MovieFileError) as refused:
            check_movie_header(path)
        assert str(refused.value).startswith(f"{path}: its 'moviedreamer_movie' metadata is not JSON ("), str(refused.value)


# ------------------------------------------------------------------------------------------ model files


def test_a_storyboard_file_whose_metadata_is_nested_too_deeply_is_a_value_error(tmp_path):
    from moviedreamer_core.storyboard import METADATA_KEY, Storyboard

    path = str(tmp_path / "board.safetensors")
    save_file({"tokens": torch.zeros(1, 1, 4)}, path, metadata={METADATA_KEY: DEEP})
    with pytest.raises(ValueError, match="nested too deeply"):
        Storyboard.from_safetensors(path)


def test_toy_cinema_files_whose_metadata_is_nested_too_deeply_are_value_errors(tmp_path):
    """The toy tokenizer, identity embedder and probe (their files' JSON metadata: configuration, training info)."""
    from moviedreamer_core.toycinema import identity, probe
    from moviedreamer_core.toycinema.tokenizer import METADATA_KEY, ToyTokenizer

    path = str(tmp_path / "toy.safetensors")
    save_file({"x": torch.zeros(1)}, path, metadata={METADATA_KEY: DEEP})
    with pytest.raises(ValueError, match="nested too deeply"):
        ToyTokenizer.load(path)
    save_file({"x": torch.zeros(1)}, path, metadata={"format": probe.FORMAT, "info": DEEP})
    with pytest.raises(ValueError, match="nested too deeply"):
        probe.Probe.load(path)
    save_file({"x": torch.zeros(1)}, path, metadata={"format": identity.FORMAT, "format_version": "1", "config": DEEP})
    with pytest.raises(ValueError, match="nested too deeply"):
        identity.ToyIdentityEmbedder.load(path)
    torch.manual_seed(0)
    identity.ToyIdentityEmbedder(identity.ToyIdentityNet(identity.IdentityConfig()), {"seed": 0}).save(path)
    assert identity.ToyIdentityEmbedder.load(path).info == {"seed": 0}
    save_file(load_file(path), path, metadata={"format": identity.FORMAT, "format_version": "1",
                                               "config": json.dumps(vars(identity.IdentityConfig())), "info": DEEP})
    with pytest.raises(ValueError, match="nested too deeply"):
        identity.ToyIdentityEmbedder.load(path)


def test_encoder_folders_whose_json_is_nested_too_deeply_are_value_errors(tmp_path):
    """``data build --clip-vision DIR --text-encoder DIR``: the folders' ``preprocessor_config.json`` and
    ``modules.json`` (a malformed one is json's ValueError; one nested too deeply was a RecursionError)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from moviedreamer_core.data.encoders import clip_vision_token_encoder
    from moviedreamer_core.sentence_encoders import minilm_folder, transformers_text_encoder

    vision = tmp_path / "clip_vision"
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=16)).save_pretrained(str(vision))
    (vision / "preprocessor_config.json").write_text('{"image_mean": ' + DEEP + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        clip_vision_token_encoder(str(vision))
    text = tmp_path / "minilm"
    text.mkdir()
    for name in os.listdir(minilm_folder()):  # the shipped MiniLM folder, but for its modules.json
        if name != "modules.json":
            os.symlink(os.path.join(minilm_folder(), name), text / name)
    (text / "modules.json").write_text(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        transformers_text_encoder(str(text))
    os.remove(text / "modules.json")
    os.symlink(os.path.join(minilm_folder(), "modules.json"), text / "modules.json")
    assert transformers_text_encoder(str(text)).space.encoder.endswith(".mean_normalised"), "the folder as shipped"


# ------------------------------------------------------------------------------------------ the toy trainer's work folder


def test_the_toy_planner_stages_record_nested_too_deeply_is_a_damaged_record(tmp_path):
    """``cli/toycinema_train.planner_work_folder`` empties a work folder whose ``stage.json`` does not parse (cut short
    by a kill); one nested thousands deep too (before: RecursionError, the command stopped with a traceback)."""
    from cli.toycinema_train import PLANNER_WORK, planner_work_folder

    stage = {"films": 3, "steps": 2, "seed": 0}
    work = planner_work_folder(str(tmp_path), stage)
    (tmp_path / PLANNER_WORK / "data").mkdir()
    (tmp_path / PLANNER_WORK / "stage.json").write_text(DEEP)
    assert planner_work_folder(str(tmp_path), stage) == work
    assert os.listdir(work) == ["stage.json"]
    assert json.loads((tmp_path / PLANNER_WORK / "stage.json").read_text()) == stage


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_the_toy_planner_stages_record_is_read_bounded(tmp_path):
    """A ``stage.json`` that is /dev/zero linked in (or any file past ``MAX_STAGE_BYTES``) is another stage's record:
    the folder is emptied and the stage starts afresh. Before, ``f.read()`` read the device without end."""
    from cli.toycinema_train import MAX_STAGE_BYTES, PLANNER_WORK, planner_work_folder

    stage = {"films": 3, "steps": 2, "seed": 0}
    work = planner_work_folder(str(tmp_path), stage)
    for make in (lambda p: os.symlink("/dev/zero", p), lambda p: open(p, "wb").truncate(MAX_STAGE_BYTES + 1)):
        (tmp_path / PLANNER_WORK / "data").mkdir()
        os.remove(tmp_path / PLANNER_WORK / "stage.json")
        make(tmp_path / PLANNER_WORK / "stage.json")
        assert planner_work_folder(str(tmp_path), stage) == work
        assert os.listdir(work) == ["stage.json"] and not os.path.islink(tmp_path / PLANNER_WORK / "stage.json")
        assert json.loads((tmp_path / PLANNER_WORK / "stage.json").read_text()) == stage
