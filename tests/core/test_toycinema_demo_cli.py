"""The toy demo command: its ``--shots`` maximum makes a story the script validator accepts (found by an audit: the 5,000 shots
``--shots`` allowed made a story of about 16,500 s, over a movie's 4 hours, refused only after ComfyUI had loaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from moviedreamer_core.project import MAX_MANIFEST_BYTES
from moviedreamer_core.script import load_script
from moviedreamer_core.toycinema.film_script import script_text
from moviedreamer_core.toycinema.grammar import generate_film

DEMO = Path(__file__).resolve().parents[2] / "cli" / "toycinema_demo.py"


def _demo():
    spec = importlib.util.spec_from_file_location("_toycinema_demo_for_test", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 3, 777001])
def test_the_longest_story_the_demo_allows_is_a_valid_script(seed):
    demo = _demo()
    script = load_script(script_text(generate_film(seed, n_shots=demo.MAX_SHOTS), "world"))
    assert len(script.shots) == demo.MAX_SHOTS


def test_the_demo_lists_the_keyframes_the_identity_report_flagged(tmp_path):
    """From a terminal there is no storyboard panel: the demo printed only the paths, also when keyframes showed a
    character twice or a figure nobody wrote (an audit). It now reads the flags from the project's manifest."""
    import json

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"keyframes": {
        "0": {"shot": "s1", "identity": {"flags": []}},
        "1": {"shot": "s2", "identity": {"flags": ["Ava doubled (2 faces)"]}},
        "10": {"shot": "s9", "identity": {"flags": ["extra face (nobody known)"]}},
        "2": {"shot": "s3"}}}))
    demo = _demo()
    assert demo.identity_flags(str(manifest), MAX_MANIFEST_BYTES) == [(1, "s2", ["Ava doubled (2 faces)"]),
                                                                       (10, "s9", ["extra face (nobody known)"])]
    assert demo.identity_flags(str(tmp_path / "missing.json"), MAX_MANIFEST_BYTES) == []


DEEP = "[" * 100_000 + "]" * 100_000
#: manifests the demo may find after its run (edited, damaged, of another shape): no flags from them, and no traceback
HOSTILE_MANIFESTS = {
    "cut short": '{"keyframes": {"1": {"shot": "s2", "identity": {"flags": ["Ava doub',
    "deep": DEEP,
    "deep inside": '{"keyframes": ' + DEEP + "}",
    "a list": "[]",
    "keyframes a list": '{"keyframes": []}',
    "an entry that is text": '{"keyframes": {"1": "flagged"}}',
    "a report that is text": '{"keyframes": {"1": {"identity": "flagged"}}}',
    "flags that are text": '{"keyframes": {"1": {"identity": {"flags": "abc"}}}}',
    "a key of 5,000 digits": '{"keyframes": {"' + "9" * 5000 + '": {"identity": {"flags": ["x"]}}}}',
}


@pytest.mark.parametrize("name", list(HOSTILE_MANIFESTS))
def test_a_damaged_or_wrong_shaped_manifest_gives_no_flags(tmp_path, name):
    """Before, ``json.load`` read it whole: nested too deeply was a RecursionError, a list where an object belongs an
    AttributeError, text flags came out one letter each, ending the run that had made the movie with a traceback."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(HOSTILE_MANIFESTS[name])
    assert _demo().identity_flags(str(manifest), MAX_MANIFEST_BYTES) == []


def test_flags_of_other_types_are_printed_as_text_and_a_manifest_past_the_limit_is_not_read(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"keyframes": {"4": {"identity": {"flags": [2, null]}}}}')
    demo = _demo()
    assert demo.identity_flags(str(manifest), MAX_MANIFEST_BYTES) == [(4, "?", ["2", "None"])]
    assert demo.identity_flags(str(manifest), 20) == [], "larger than the limit it is given"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_manifest_that_is_dev_zero_is_read_no_further_than_the_limit(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.symlink_to("/dev/zero")
    assert _demo().identity_flags(str(manifest), 2**20) == []


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "too_large", "latin1"])
def test_a_script_file_the_demo_cannot_use_is_refused_naming_it(tmp_path, kind):
    """``--script`` was read with ``open().read()`` (an audit): /dev/zero was read until memory ran out and a named pipe
    nobody writes to hung the command. It is read now as ``script validate`` and the queue command read scripts:
    bounded by ``MAX_SCRIPT_FILE_BYTES``, a silent pipe refused, text that is not UTF-8 named; one line, no traceback."""
    import argparse
    import os

    from moviedreamer_core.script.limits import MAX_SCRIPT_FILE_BYTES

    path = tmp_path / "script.yaml"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes here")
        os.mkfifo(path)
    elif kind == "dev_zero":
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero here")
    elif kind == "too_large":
        with open(path, "wb") as f:
            f.truncate(MAX_SCRIPT_FILE_BYTES + 1)
    else:
        path.write_bytes("title: Caf\u00e9\n".encode("latin-1"))
    args = argparse.Namespace(script=str(path), film_seed=None, seed=None, project=None)
    with pytest.raises(SystemExit) as e:
        _demo().toy_prompt(args)
    said = str(e.value.code)
    assert said.startswith(f"--script {path} "), said
    assert {"fifo": "named pipe", "dev_zero": "larger than the limit", "too_large": "more than the limit",
            "latin1": "not UTF-8"}[kind] in said, said
