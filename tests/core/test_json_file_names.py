"""Malformed JSON in a file says which file: a storyboard's and the toy cinema files' JSON metadata (tokenizer, identity
embedder, probe) that is not JSON, is nested too deeply or is not an object is a ``ValueError`` that begins with the
path as given and names the metadata key. Before, the message was json's own ("Expecting property name enclosed in
double quotes: line 1 column 2 (char 1)", "nested too deeply") or a ``TypeError`` from a configuration that was not an
object, naming no file. (Encoder folders: ``test_data_encoder_folders.py``; the toy UNet: ``tests/host/test_toycinema.py``.)"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

DEEP = "[" * 100_000 + "]" * 100_000
#: metadata text -> the words after "<path>: its '<key>' metadata "
BAD = {"{nope": "is not valid JSON (line 1, column 2: Expecting property name enclosed in double quotes)",
       DEEP: "is not valid JSON (nested too deeply)",
       "[1, 2]": "is not a JSON object (got list)"}


def _refused(load, path: str, key: str, words: str) -> None:
    with pytest.raises(ValueError) as refused:
        load(path)
    assert str(refused.value) == f"{path}: its '{key}' metadata {words}", str(refused.value)


@pytest.mark.parametrize("text", list(BAD), ids=["malformed", "deep", "a list"])
def test_a_storyboard_whose_metadata_is_not_a_json_object_names_the_file(tmp_path, text):
    from moviedreamer_core.storyboard import METADATA_KEY, Storyboard

    path = str(tmp_path / "board.safetensors")
    save_file({"tokens": torch.zeros(1, 1, 4)}, path, metadata={METADATA_KEY: text})
    _refused(Storyboard.from_safetensors, path, METADATA_KEY, BAD[text])


@pytest.mark.parametrize("text", list(BAD), ids=["malformed", "deep", "a list"])
def test_toy_cinema_files_whose_metadata_is_not_a_json_object_name_the_file(tmp_path, text):
    from moviedreamer_core.toycinema import identity, probe
    from moviedreamer_core.toycinema.tokenizer import METADATA_KEY, ToyTokenizer

    path = str(tmp_path / "toy.safetensors")
    save_file({"x": torch.zeros(1)}, path, metadata={METADATA_KEY: text})
    _refused(ToyTokenizer.load, path, METADATA_KEY, BAD[text])
    save_file({"x": torch.zeros(1)}, path, metadata={"format": probe.FORMAT, "info": text})
    _refused(probe.Probe.load, path, "info", BAD[text])
    save_file({"x": torch.zeros(1)}, path, metadata={"format": identity.FORMAT, "format_version": "1", "config": text})
    _refused(identity.ToyIdentityEmbedder.load, path, "config", BAD[text])
    torch.manual_seed(0)
    identity.ToyIdentityEmbedder(identity.ToyIdentityNet(identity.IdentityConfig()), {"seed": 0}).save(path)
    save_file(load_file(path), path, metadata={"format": identity.FORMAT, "format_version": "1",
                                               "config": json.dumps(vars(identity.IdentityConfig())), "info": text})
    _refused(identity.ToyIdentityEmbedder.load, path, "info", BAD[text])


def test_read_json_file_says_which_file_and_what_is_wrong(tmp_path):
    """``text_files.read_json_file``, the bounded reader behind the encoder folders' JSON files."""
    from moviedreamer_core.text_files import read_json_file

    path = tmp_path / "config.json"
    path.write_text('{"a": [1, 2]}')
    assert read_json_file(str(path), 100) == {"a": [1, 2]}
    for text, words in (('{"a": [1, 2]', "is not valid JSON (line 1, column 13: Expecting ',' delimiter)"),
                        ("[" * 2000, "is 2,000 bytes, more than the limit of 1,000 bytes")):
        path.write_text(text)
        with pytest.raises(ValueError) as refused:
            read_json_file(str(path), 1000)
        assert str(refused.value) == f"{path} {words}", str(refused.value)
    path.write_text(DEEP)
    with pytest.raises(ValueError, match=r"^settings\.json is not valid JSON \(nested too deeply\)$"):
        read_json_file(str(path), 10**6, "settings.json")
    with pytest.raises(ValueError, match=r"cannot be read"):
        read_json_file(str(tmp_path / "missing.json"), 1000)


@pytest.mark.parametrize("text, words", [("{nope", " is not valid JSON (line 1, column 2: Expecting property name"),
                                         (DEEP, " is not valid JSON (nested too deeply)"),
                                         ("[]", " is not a JSON object (got list)")],
                         ids=["malformed", "deep", "a list"])
def test_a_toy_dataset_manifest_or_run_record_that_is_not_a_json_object_names_the_file(tmp_path, text, words):
    """``toycinema.json`` (a toy planner dataset's manifest) and ``toy_run.json`` (beside a toy planner) were read whole
    with ``json.load``: json's message named no file, one nested too deeply was a RecursionError."""
    from moviedreamer_core.toycinema.planner_data import MANIFEST, read_manifest
    from moviedreamer_core.toycinema.planner_runs import RUN_FILE, read_run

    (tmp_path / MANIFEST).write_text(text)
    (tmp_path / RUN_FILE).write_text(text)
    for read, path, arg in ((read_manifest, tmp_path / MANIFEST, str(tmp_path)),
                            (read_run, tmp_path / RUN_FILE, str(tmp_path / "planner.safetensors"))):
        with pytest.raises(ValueError) as refused:
            read(arg)
        assert str(refused.value).startswith(f"{path}{words}"), str(refused.value)
    (tmp_path / RUN_FILE).write_text('{"variant": "full"}')
    assert read_run(str(tmp_path / "planner.safetensors")) == {"variant": "full"}
    assert read_run(str(tmp_path / "elsewhere" / "planner.safetensors")) == {}
