"""The trainers' own files, read again when a run resumes or a file is loaded: a damaged, truncated, deeply nested
("[" * 100000), huge (a sparse file past the bound) or wrong-shaped one is a clear error naming the file, or, where a
damaged file is documented to count as absent (a log line cut short by a kill, a training state or encoded samples
that do not read), is dropped bounded with a warning that says which file and what is wrong.

Before: ``python -m moviedreamer_core.train planner`` read ``latest.json``, ``trainer_state.json``, ``rng_<i>.json``
and ``log.jsonl`` whole with ``json.load``: their errors were tracebacks naming no file (``JSONDecodeError``,
``KeyError``, ``TypeError``, ``RecursionError``), and one log line cut short stopped every resume. The planner's and
renderer's metadata, the training state and the encoded samples said json's bare words ("Expecting value: line 1
column 1 (char 0)", "maximum recursion depth exceeded", "'list' object has no attribute 'get'")."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import save_file

DEEP = "[" * 100_000 + "]" * 100_000
#: file text -> what the error says after the file's name
BAD = {'{"checkpoint": "step_0000': "is not valid JSON (line 1, column 16: Unterminated string starting at",
       DEEP: "is not valid JSON (nested too deeply)",
       "[1, 2]": "is not a JSON object (got list)",
       "": "is not valid JSON (line 1, column 1: Expecting value)"}
IDS = ["cut short", "deep", "a list", "empty"]


def _huge(path) -> None:
    """A file one byte past the checkpoint bound (sparse: nothing is written to disk)."""
    from moviedreamer_core.train.state import MAX_CHECKPOINT_JSON_BYTES

    with open(path, "wb") as f:
        f.truncate(MAX_CHECKPOINT_JSON_BYTES + 1)


def _config(tmp_path):
    from moviedreamer_core.train import load_config

    return load_config("tiny", [f"output.dir={tmp_path / 'run'}"])


# ------------------------------------------------------------------------------ python -m moviedreamer_core.train


@pytest.mark.parametrize("text", list(BAD) + ["huge", '{"checkpoint": ["step_00000003"]}'],
                         ids=IDS + ["huge", "checkpoint not a name"])
def test_a_damaged_latest_pointer_is_a_config_error_naming_it(tmp_path, text):
    """``checkpoints/latest.json`` names the checkpoint a rerun resumes from (``checkpoint.resume=auto``)."""
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.state import LATEST, checkpoints_dir, find_resume

    cfg = _config(tmp_path)
    os.makedirs(checkpoints_dir(cfg))
    latest = os.path.join(checkpoints_dir(cfg), LATEST)
    if text == "huge":
        _huge(latest)
        words = "is 16,777,217 bytes, more than the limit of 16,777,216 bytes"
    else:
        with open(latest, "w") as f:
            f.write(text)
        words = BAD.get(text, ": 'checkpoint' must name a checkpoint folder, got ['step_00000003']")
    with pytest.raises(ConfigError) as refused:
        find_resume(cfg)
    said = str(refused.value)
    assert said.startswith(latest + ("" if words.startswith(":") else " ") + words), said
    assert "checkpoint.resume=none" in said, said


@pytest.mark.parametrize("name", ["absolute", "../elsewhere/step_00000003", "..", "sub/step_00000003",
                                  "sub\\step_00000003", "."])
def test_a_latest_pointer_outside_the_checkpoints_folder_is_refused_naming_it(tmp_path, name):
    """Found by a review: ``os.path.join(checkpoints, name)`` with an absolute name or one with ``..`` resumed
    (loading the optimiser state of) whatever complete checkpoint it pointed to outside the run's ``checkpoints/``.
    ``save_checkpoint`` writes one plain folder name there: anything else is a damaged file, refused as such."""
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.state import LATEST, STATE_FILE, checkpoints_dir, find_resume

    cfg = _config(tmp_path)
    root = checkpoints_dir(cfg)
    outside = tmp_path / "run" / "elsewhere" / "step_00000003"  # a complete checkpoint the pointer reaches
    for folder in (outside, os.path.join(root, "sub", "step_00000003"), os.path.join(root, "sub\\step_00000003")):
        os.makedirs(folder)
        with open(os.path.join(folder, STATE_FILE), "w") as f:
            json.dump(_state(), f)
    for folder in (tmp_path / "run", root):
        with open(os.path.join(folder, STATE_FILE), "w") as f:
            json.dump(_state(), f)
    latest = os.path.join(root, LATEST)
    with open(latest, "w") as f:
        json.dump({"checkpoint": str(outside) if name == "absolute" else name, "step": 3}, f)
    with pytest.raises(ConfigError) as refused:
        find_resume(cfg)
    said = str(refused.value)
    assert said.startswith(f"{latest}: 'checkpoint' must be the name of a folder inside {root}"), said
    assert "checkpoint.resume=none" in said, said


def test_a_latest_pointer_to_a_folder_that_is_gone_falls_back_to_the_newest_complete_one(tmp_path):
    """The folder ``latest.json`` names was deleted: the newest ``step_*`` folder with its ``trainer_state.json`` is
    resumed (a ``.partial`` one, or one without the state, is not complete), and the log says so; with none, the
    warning names ``latest.json`` and the run starts afresh."""
    from moviedreamer_core.train.state import LATEST, STATE_FILE, checkpoints_dir, find_resume

    cfg = _config(tmp_path)
    root = checkpoints_dir(cfg)
    for name, complete in (("step_00000002", True), ("step_00000004", True), ("step_00000006", False),
                           ("step_00000008.partial", True)):
        os.makedirs(os.path.join(root, name))
        if complete:
            with open(os.path.join(root, name, STATE_FILE), "w") as f:
                json.dump(_state(), f)
    latest = os.path.join(root, LATEST)
    with open(latest, "w") as f:
        json.dump({"checkpoint": "step_00000010", "step": 10}, f)
    said = []
    assert find_resume(cfg, said.append) == os.path.join(root, "step_00000004")
    assert said == [f"warning: {latest} names {os.path.join(root, 'step_00000010')}, which is not a complete checkpoint "
                    f"(no {STATE_FILE}); resuming from the newest complete checkpoint folder there, "
                    f"{os.path.join(root, 'step_00000004')}"], said
    os.remove(latest)  # a pointer lost (a kill between the folder's rename and the pointer's write): the same
    said = []
    assert find_resume(cfg, said.append) == os.path.join(root, "step_00000004")
    assert said and said[0].startswith(f"warning: {latest} is missing; resuming from"), said
    with open(latest, "w") as f:
        json.dump({"checkpoint": "step_00000010", "step": 10}, f)
    for name in ("step_00000002", "step_00000004"):
        os.remove(os.path.join(root, name, STATE_FILE))
    said = []
    assert find_resume(cfg, said.append) is None
    assert said == [f"warning: {latest} names {os.path.join(root, 'step_00000010')}, which is not a complete checkpoint "
                    f"(no {STATE_FILE}), and {root} holds no other complete checkpoint (step_*/{STATE_FILE}): "
                    "starting afresh"], said


def _state() -> dict:
    from moviedreamer_core.train.state import TrainerState

    return asdict(TrainerState(step=3, samples_seen=24, epoch=0, scheduler={"last_epoch": 3}, fingerprint={"seed": 0}))


@pytest.mark.parametrize("text", list(BAD) + ["huge", json.dumps({**_state(), "step": "3"}),
                                              json.dumps({k: v for k, v in _state().items() if k != "epoch"}),
                                              json.dumps({**_state(), "steps": 3})],
                         ids=IDS + ["huge", "step in words", "epoch missing", "unknown field"])
def test_a_damaged_trainer_state_is_a_config_error_naming_it(tmp_path, text):
    """``step_X/trainer_state.json``: step, samples, epoch, the scheduler's state and the run's fingerprint."""
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.state import STATE_FILE, TrainerState, read_trainer_state

    path = tmp_path / STATE_FILE
    path.write_text(json.dumps(_state()))
    assert read_trainer_state(str(tmp_path)) == TrainerState(**_state())
    if text == "huge":
        _huge(path)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_trainer_state(str(tmp_path))
    said = str(refused.value)
    assert said.startswith(str(path)), said
    if text in BAD:
        assert said.startswith(f"{path} {BAD[text]}"), said
    elif text != "huge":
        assert "not a trainer state this trainer writes" in said and said.count("\n") == 0, said


@pytest.mark.parametrize("change", ["cut short", "deep", "python not a list", "numpy missing", "tensors damaged"])
def test_damaged_random_states_are_a_config_error_naming_the_files(tmp_path, change):
    """``step_X/rng_<i>.json`` and ``rng_<i>.safetensors``: python's, numpy's and torch's states and accelerate's step."""
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.state import load_rng, save_rng

    save_rng(str(tmp_path), 0, 7)
    assert load_rng(str(tmp_path), 0) == 7
    meta_path, tensors_path = tmp_path / "rng_0.json", tmp_path / "rng_0.safetensors"
    meta = json.loads(meta_path.read_text())
    if change == "cut short":
        meta_path.write_text(json.dumps(meta)[:100])
    elif change == "deep":
        meta_path.write_text(DEEP)
    elif change == "python not a list":
        meta_path.write_text(json.dumps({**meta, "python": 5}))
    elif change == "numpy missing":
        meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "numpy"}))
    else:
        tensors_path.write_bytes(tensors_path.read_bytes()[:40])
    with pytest.raises(ConfigError) as refused:
        load_rng(str(tmp_path), 0)
    said = str(refused.value)
    assert str(meta_path) in said and "checkpoint.resume=none" in said, said
    if change in ("cut short", "deep"):
        assert said.startswith(f"{meta_path} is not valid JSON ("), said
    else:
        assert said.startswith(f"{tensors_path} and {meta_path}: not the random states this trainer writes"), said


@pytest.mark.parametrize("which", ["rng_0.json", "rng_0.safetensors"])
@pytest.mark.parametrize("kind", ["a named pipe", "a folder", "a device", "missing"])
def test_random_state_files_that_are_not_files_are_a_config_error_naming_them(tmp_path, which, kind):
    """Found by an audit: a named pipe, a folder or a device in place of ``rng_<i>.json`` (or its ``.safetensors``), or
    one of the pair missing, was taken for an earlier release's checkpoint without them: ``load_rng`` returned None and
    the resume went on with the random states unrestored (no longer exact, silently). A checkpoint with neither file
    is still such a checkpoint."""
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.state import load_rng, save_rng

    assert load_rng(str(tmp_path), 0) is None  # neither file: an earlier release's checkpoint
    save_rng(str(tmp_path), 0, 7)
    path = tmp_path / which
    path.unlink()
    if kind in ("a named pipe", "a device") and os.name != "posix":
        pytest.skip("named pipes and /dev/zero are POSIX things")
    if kind == "a named pipe":
        os.mkfifo(path)
    elif kind == "a folder":
        path.mkdir()
    elif kind == "a device":
        os.symlink("/dev/zero", path)
    with pytest.raises(ConfigError) as refused:
        load_rng(str(tmp_path), 0)
    said = str(refused.value)
    other = "rng_0.safetensors" if which == "rng_0.json" else "rng_0.json"
    words = f"is missing (or a broken link) while {other} is there" if kind == "missing" else f"is {kind}"
    assert said.startswith(f"{path} {words}, not the random states this trainer writes; "), said
    assert "checkpoint.resume=none" in said and said.count("\n") == 0, said


def test_a_log_line_cut_short_or_not_a_record_is_dropped_when_a_run_resumes(tmp_path):
    """``log.jsonl`` is appended to a line a step, so a kill can cut its last line short; a resume keeps the records up
    to its checkpoint and drops what is not a record (before: ``JSONDecodeError``, ``KeyError`` or ``TypeError``, and
    the run could not resume at all)."""
    from moviedreamer_core.train.loop import MAX_LOG_LINE_BYTES, _truncate_log

    records = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4)]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join([records[0], "[1, 2]", '{"loss": 0.5}', '{"step": true}', DEEP, records[1],
                              "x" * (MAX_LOG_LINE_BYTES * 3), records[2], records[3], '{"step": 5, "lo']))
    _truncate_log(str(log), 3)
    assert log.read_text() == "".join(r + "\n" for r in records[:3])
    log.write_text(records[0] + "\n" + records[1])  # killed before the newline: the next record must not join it
    _truncate_log(str(log), 3)
    assert log.read_text() == records[0] + "\n" + records[1] + "\n"


def test_a_log_past_its_bound_is_a_config_error_naming_it(tmp_path):
    from moviedreamer_core.train import ConfigError
    from moviedreamer_core.train.loop import MAX_LOG_BYTES, _truncate_log

    log = tmp_path / "log.jsonl"
    with open(log, "wb") as f:
        f.truncate(MAX_LOG_BYTES + 1)  # sparse
    with pytest.raises(ConfigError, match=rf"^{log} is 1,073,741,825 bytes, more than the limit of 1,073,741,824 "):
        _truncate_log(str(log), 3)


# ------------------------------------------------------------------ the renderer's and toy decoder's training state


@pytest.mark.parametrize("text, words", [("{nope", "is not valid JSON (line 1, column 2: Expecting property name"),
                                         (DEEP, "is not valid JSON (nested too deeply)"),
                                         ("[1, 2]", "is not a JSON object (got list)")], ids=IDS[:3])
def test_a_training_state_whose_metadata_is_not_an_object_is_ignored_saying_which(tmp_path, caplog, text, words):
    """``training_state.load_state`` (the renderer training, the toy decoder): the training starts afresh, as for any
    file that does not read, and the warning names the file and its metadata key."""
    from moviedreamer_core.training_state import load_state

    path = tmp_path / "decoder.resume"
    save_file({"generator": torch.Generator().get_state()}, str(path), metadata={"toy_state": text})
    net = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="moviedreamer_core.training_state"):
        assert load_state(str(path), metadata_key="toy_state", fingerprint="f", max_step=5, modules={"net": net},
                          optimizer=torch.optim.AdamW(net.parameters()), generator=torch.Generator()) is None
    assert f"decoder.resume cannot be read (its 'toy_state' metadata {words}" in caplog.text, caplog.text


@pytest.mark.parametrize("text, words", [("{nope", "is not valid JSON (line 1, column 2: Expecting property name"),
                                         (DEEP, "is not valid JSON (nested too deeply)"),
                                         ("[1, 2]", "is not a JSON object (got list)")], ids=IDS[:3])
def test_encoded_samples_whose_metadata_is_not_an_object_are_encoded_again_saying_which(tmp_path, caplog, text, words):
    from moviedreamer_core.renderer.sample_cache import METADATA_KEY, load_samples

    path = tmp_path / "r.safetensors.samples"
    save_file({"generator": torch.Generator().get_state()}, str(path), metadata={METADATA_KEY: text})
    with caplog.at_level(logging.WARNING):
        assert load_samples(str(path), fingerprint="a") is None
    assert f"{path} cannot be used (ValueError: its '{METADATA_KEY}' metadata {words}" in caplog.text, caplog.text


# --------------------------------------------------------------------------------- planner and renderer files


@pytest.mark.parametrize("what", ["planner", "renderer"])
def test_a_model_file_whose_configuration_is_not_json_names_the_file_and_its_metadata(tmp_path, what):
    """A planner or renderer file loaded by a node: json's bare "Expecting property name ..." named no metadata."""
    from moviedreamer_core.planner.checkpoint import METADATA_KEY as PLANNER_KEY, read_planner_config
    from moviedreamer_core.renderer.adapter import METADATA_KEY as RENDERER_KEY, read_renderer_config

    key, read = (PLANNER_KEY, read_planner_config) if what == "planner" else (RENDERER_KEY, read_renderer_config)
    path = tmp_path / "damaged.safetensors"
    for text, words in (("{nope", "is not valid JSON (line 1, column 2: Expecting property name"),
                        (DEEP, "is not valid JSON (nested too deeply)")):
        save_file({"w": torch.zeros(1)}, str(path), metadata={key: text})
        with pytest.raises(ValueError) as refused:
            read(str(path))
        said = str(refused.value)
        assert said.startswith(f"{what} file damaged.safetensors: its configuration ('{key}' metadata) {words}"), said
