"""The multimodal script: parsing, every validation error with its exact place, and the content hash."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from moviedreamer_core.script import (
    Script,
    ScriptError,
    json_schema,
    load_script,
    script_hash,
)

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA_FILE = Path(__file__).parents[2] / "moviedreamer_core" / "script" / "moviedreamer_script.schema.json"


@pytest.fixture
def input_dir(tmp_path) -> Path:
    """A host-like input folder holding one good reference photo and a few bad files."""
    root = tmp_path / "input"
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(root / "ava.png")
    (root / "faces").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "faces" / "bo.jpg")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not an image")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(root / "tiny.png")
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(outside)
    os.symlink(outside, root / "link_out.png")
    os.symlink(root / "ava.png", root / "link_in.png")
    return root


def base_script() -> dict:
    return yaml.safe_load((FIXTURES / "lighthouse.yaml").read_text())


def as_text(data, fmt: str) -> str:
    return json.dumps(data, indent=1) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)


# ------------------------------------------------------------------------------------------ good scripts


def test_fixture_loads_and_derives_keyframes(input_dir):
    script = load_script((FIXTURES / "lighthouse.yaml").read_text(), input_dir=str(input_dir), image_count=1)
    assert isinstance(script, Script)
    assert [s.shot_id for s in script.shots] == ["s1", "s2"]
    assert script.shots[1].camera.value == "close_up"  # "Close-Up" normalised
    kfs = script.keyframes()
    assert len(kfs) == script.n_keyframes == 3
    assert [(k.shot_id, k.index_in_shot, k.action) for k in kfs] == [
        ("s1", 0, "Ava climbs the spiral staircase."),
        ("s2", 0, "Bo turns to the door."),
        ("s2", 1, "Ava hands Bo a lantern."),
    ]
    assert kfs[2].characters == (0, 1)
    assert kfs[0].characters == (0,)


def test_references_in_subfolders_and_links_inside_are_accepted(input_dir):
    data = base_script()
    data["characters"][0]["references"] = ["faces/bo.jpg", "link_in.png", 0]
    load_script(as_text(data, "yaml"), input_dir=str(input_dir), image_count=1)


# ---------------------------------------------------------------------------------------------- the hash


def test_hash_is_the_same_for_json_and_yaml_spellings(input_dir):
    a = load_script((FIXTURES / "lighthouse.yaml").read_text(), input_dir=str(input_dir), image_count=1)
    b = load_script((FIXTURES / "lighthouse.json").read_text(), input_dir=str(input_dir), image_count=1)
    assert script_hash(a) == script_hash(b)


def test_hash_is_stable_across_runs_and_versions():
    """Pinned value: if this changes, every user's resume cache is invalidated. Change it only on purpose
    (and bump SCRIPT_FORMAT_VERSION)."""
    script = load_script((FIXTURES / "lighthouse.yaml").read_text())
    assert script_hash(script) == "7792aaec56d7cf2970a3eaa2ea2739ac81236b0c43161d432441fbf727067f20"


@pytest.mark.parametrize(
    "path,value",
    [
        (("shots", 0, "action"), "Ava runs up the spiral staircase."),
        (("shots", 0, "duration"), 5),
        (("characters", 0, "references", 0), "faces/bo.jpg"),
        (("shots", 1, "transition"), "cut"),
        (("style",), "film noir"),
    ],
)
def test_hash_changes_with_any_visible_change(path, value):
    data = base_script()
    before = script_hash(load_script(as_text(data, "yaml")))
    target = data
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    assert script_hash(load_script(as_text(data, "yaml"))) != before


# ------------------------------------------------------------------------------------ validation errors


def mutate(fn):
    data = base_script()
    fn(data)
    return data


def _set(path, value):
    def fn(data):
        target = data
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    return fn


def _delete(path):
    def fn(data):
        target = data
        for p in path[:-1]:
            target = target[p]
        del target[path[-1]]
    return fn


CASES = {
    "missing title": (_delete(("title",)), "title", "missing required field"),
    "empty scene": (_set(("shots", 0, "scene"), "  "), "shots[0].scene", "must not be empty"),
    "empty action list": (_set(("shots", 0, "action"), []), "shots[0].action", "must not be empty"),
    "unknown character": (_set(("shots", 1, "characters"), ["Ava", "Mira"]), "shots[1].characters[1]",
                          'unknown character "Mira" (known: Ava, Bo)'),
    "character twice on screen": (_set(("shots", 1, "characters"), ["Bo", "Bo"]), "shots[1].characters[1]", "listed twice"),
    "duplicate character": (_set(("characters", 1, "name"), "ava"), "characters[1].name",
                            'duplicate character "ava" (also characters[0])'),
    "duplicate shot id": (_set(("shots", 1, "id"), "s1"), "shots[1].id", 'duplicate shot id "s1" (also shots[0])'),
    "zero duration": (_set(("shots", 0, "duration"), 0), "shots[0].duration", "positive number of seconds"),
    "negative duration": (_set(("shots", 0, "duration"), -2.5), "shots[0].duration", "positive number of seconds"),
    "endless shot": (_set(("shots", 0, "duration"), 100000), "shots[0].duration", "too long for one shot"),
    # NaN fails every comparison: it was refused as "too long for one shot" (an audit)
    "nan duration": (_set(("shots", 0, "duration"), float("nan")), "shots[0].duration", "positive number of seconds, got nan"),
    "absurd keyframes": (_set(("shots", 0, "keyframes"), 500), "shots[0].keyframes", "too many"),
    "zero keyframes": (_set(("shots", 0, "keyframes"), 0), "shots[0].keyframes", "greater than or equal to 1"),
    "keyframes vs actions": (_set(("shots", 1, "keyframes"), 3), "shots[1].keyframes", "action lists 2 sentences"),
    "dotdot reference": (_set(("characters", 0, "references"), ["../secret.png"]), "characters[0].references[0]", 'contains ".."'),
    "absolute reference": (_set(("characters", 0, "references"), ["/etc/passwd"]), "characters[0].references[0]", "absolute path"),
    "windows device reference": (_set(("characters", 0, "references"), ["nul.png"]), "characters[0].references[0]",
                                 '"nul.png" is a device name on Windows'),
    "windows device folder": (_set(("characters", 0, "references"), ["refs/Con /ava.png"]), "characters[0].references[0]",
                              '"Con " is a device name on Windows'),
    "link leaving the folder": (_set(("characters", 0, "references"), ["link_out.png"]), "characters[0].references[0]", "outside"),
    "missing file": (_set(("characters", 0, "references"), ["nobody.png"]), "characters[0].references[0]", "not found"),
    "empty file": (_set(("characters", 0, "references"), ["empty.png"]), "characters[0].references[0]", "is empty"),
    "not an image": (_set(("characters", 0, "references"), ["notes.png"]), "characters[0].references[0]", "not a readable image"),
    "image too small": (_set(("characters", 0, "references"), ["tiny.png"]), "characters[0].references[0]", "too small"),
    "index out of range": (_set(("characters", 1, "references"), [3]), "characters[1].references[0]", "out of range"),
    "negative index": (_set(("characters", 1, "references"), [-1]), "characters[1].references[0]", "greater than or equal to 0"),
    "duration as text": (_set(("shots", 0, "duration"), "4"), "shots[0].duration", "expected a number, got text"),
    "duration as bool": (_set(("shots", 0, "duration"), True), "shots[0].duration", "expected a number"),
    "characters not a list": (_set(("shots", 0, "characters"), "Ava"), "shots[0].characters", "expected a list"),
    "title as number": (_set(("title",), 7), "title", "expected text, got a whole number"),
    "shot id as list": (_set(("shots", 0, "id"), ["a"]), "shots[0].id", "expected a text id or a whole number"),
    "unknown camera": (_set(("shots", 0, "camera"), "dolly"), "shots[0].camera", "'dolly' is not one of"),
    "unknown field": (_set(("shots", 0, "lens"), "35mm"), "shots[0].lens", 'unknown field "lens"'),
    "no shots": (_set(("shots",), []), "shots", "must not be empty"),
    "description missing": (_delete(("characters", 0, "description")), "characters[0].description", "missing required field"),
}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_reported_at_its_place(case, fmt, input_dir):
    fn, path, text = CASES[case]
    with pytest.raises(ScriptError) as err:
        load_script(as_text(mutate(fn), fmt), input_dir=str(input_dir), image_count=1)
    where = {i.path: i.message for i in err.value.issues}
    assert path in where, f"{case}: expected a problem at {path}, got {err.value}"
    assert text in where[path], f"{case}: {where[path]!r} does not say {text!r}"
    assert f"{path}: " in str(err.value)


def test_all_problems_are_collected_in_one_report(input_dir):
    data = base_script()
    del data["title"]
    data["characters"][0]["references"] = ["../x.png", 5]
    data["shots"][0]["duration"] = 0
    data["shots"][1]["characters"] = ["Ava", "Mira"]
    data["shots"][1]["id"] = "s1"
    with pytest.raises(ScriptError) as err:
        load_script(as_text(data, "yaml"), input_dir=str(input_dir), image_count=1)
    paths = [i.path for i in err.value.issues]
    assert paths == [
        "title",
        "characters[0].references[0]",
        "characters[0].references[1]",
        "shots[0].duration",
        "shots[1].id",
        "shots[1].characters[1]",
    ]
    assert str(err.value).startswith("6 problems in the script:")


def test_index_references_without_images(input_dir):
    with pytest.raises(ScriptError, match=r"characters\[1\]\.references\[0\]: index 0 refers to the IMAGE batch input, but no images"):
        load_script((FIXTURES / "lighthouse.yaml").read_text(), input_dir=str(input_dir), image_count=0)


def test_too_many_keyframes_in_total():
    data = base_script()
    data["characters"][0]["references"] = []
    data["characters"][1]["references"] = []
    data["shots"] = [
        {"id": i, "scene": "a room", "action": "nothing happens", "duration": 1, "keyframes": 32} for i in range(700)
    ]
    with pytest.raises(ScriptError, match=r"shots: the script plans 22400 keyframes, more than the limit"):
        load_script(as_text(data, "json"))


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "script: the script is empty"),
        ("{\n  \"title\": \"x\",\n  shots: []\n}", "script: invalid JSON at line 3, column 3"),
        ("title: x\nshots: [1, 2\n", "script: invalid YAML at line 3"),
        ("- just\n- a list\n", "script: expected a mapping"),
        ("just words", "script: expected a mapping"),
    ],
)
def test_syntax_and_top_level_errors(text, message):
    with pytest.raises(ScriptError) as err:
        load_script(text)
    assert message in str(err.value)


def test_yaml_cannot_construct_python_objects():
    with pytest.raises(ScriptError, match=r"title: the YAML tag !!python/object/apply:os\.system is not allowed"):
        load_script("title: !!python/object/apply:os.system ['echo hi']\nshots: []\n")


# ---------------------------------------------------------------------------------------------- schema


def test_json_schema_file_is_current():
    """The JSON Schema shipped for editors matches the code. Regenerate with
    ``python -m moviedreamer_core.script schema > moviedreamer_core/script/moviedreamer_script.schema.json``."""
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_json_schema_describes_the_fields():
    schema = json_schema()
    shot = schema["$defs"]["Shot"]["properties"]
    assert {"id", "scene", "action", "characters", "camera", "duration", "keyframes", "transition"} <= set(shot)
    assert set(schema["required"]) == {"title", "shots"}
    assert "close_up" in schema["$defs"]["Camera"]["anyOf"][0]["enum"]


def test_script_objects_are_immutable():
    script = load_script((FIXTURES / "lighthouse.yaml").read_text())
    with pytest.raises(Exception):
        script.title = "other"
    with pytest.raises(Exception):
        copy.copy(script.shots[0]).scene = "x"


def test_check_script_is_the_validator_as_data():
    from moviedreamer_core.script import check_script

    good = check_script("title: T\ncharacters:\n  - name: Ava\n    description: d\nshots:\n"
                        "  - id: a\n    scene: s\n    action: [x., y.]\n    characters: [Ava]\n    duration: 3\n")
    assert good == {"ok": True, "issues": [], "notes": [], "characters": ["Ava"], "title": "T", "shots": 1, "keyframes": 2,
                    "seconds": 3.0}
    bad = check_script("title: T\ncharacters:\n  - name: Ava\n    description: d\nshots:\n"
                       "  - id: a\n    scene: s\n    action: x\n    characters: [Bo]\n    duration: 3\n")
    assert bad == {"ok": False, "characters": ["Ava"], "problems": 1,
                   "issues": [{"path": "shots[0].characters[0]", "message": 'unknown character "Bo" (known: Ava)'}]}
    broken = check_script("title: [unclosed")
    assert not broken["ok"] and broken["characters"] == [] and broken["issues"][0]["path"] == "script"
    assert not check_script("x" * 1_000_001)["ok"]


def test_check_script_notes_actions_that_name_a_character_off_screen():
    """A valid script whose action names a character the shot does not show: the check says where, as a note (what
    the action says of that character binds to nobody's face, script/mentions.py), and the script stays valid."""
    from moviedreamer_core.script import check_script
    from moviedreamer_core.script.limits import MAX_CHARACTERS, MAX_LISTED_NAMES, MAX_REPORTED_PROBLEMS, MAX_TEXT_LENGTH

    head = "title: T\ncharacters:\n  - {name: Ava, description: d}\n  - {name: Bo, description: d}\n  - {name: Cy, description: d}\nshots:\n"
    shot = "  - {{id: s{i}, scene: s, duration: 1, action: {action}, characters: {chars}}}\n"
    text = head + "".join(shot.format(i=i, action=a, chars=c) for i, (a, c) in enumerate([
        ('"Ava hands Bo a lantern."', "[Ava]"),                    # Bo is named, not on screen
        ('[Bo waits., Cy and Ava leave.]', "[Bo, Ava]"),           # the second sentence names Cy
        ('"Ava and Bo talk; Avalanche is a word."', "[Ava, Bo]"),  # everyone named is on screen; not inside words
        ('"Cy, Bo and Ava run."', "[]"),                           # nobody on screen: three names
    ]))
    result = check_script(text)
    assert result["ok"] and result["issues"] == []
    assert result["notes"] == [
        {"path": "shots[0].action", "message": "names Bo, who is not in this shot's characters: what it says of Bo is "
                                               "bound to nobody on screen (add Bo to characters if seen)"},
        {"path": "shots[1].action[1]", "message": "names Cy, who is not in this shot's characters: what it says of Cy "
                                                  "is bound to nobody on screen (add Cy to characters if seen)"},
        {"path": "shots[3].action", "message": "names Cy, Bo, Ava, who are not in this shot's characters: what it says "
                                               "of them is bound to nobody on screen (add them to characters if seen)"}]
    many = head + "".join(shot.format(i=i, action="Ava calls Bo.", chars="[Ava]") for i in range(MAX_REPORTED_PROBLEMS + 7))
    notes = check_script(many)["notes"]
    assert len(notes) == MAX_REPORTED_PROBLEMS + 1 and notes[-1] == {"path": "script", "message": "... and 7 more such actions"}
    # the names listed are bounded too: the whole cast named in a shot that shows nobody
    cast = [f"Name{i:03d}" for i in range(MAX_CHARACTERS)]
    big = json.dumps({"title": "t", "characters": [{"name": n, "description": "d"} for n in cast],
                      "shots": [{"id": "s", "scene": "s", "duration": 1, "action": " ".join(cast)[:MAX_TEXT_LENGTH]}]})
    (note,) = check_script(big)["notes"]
    named = len(" ".join(cast)[:MAX_TEXT_LENGTH].split())
    assert note["message"].startswith("names " + ", ".join(cast[:MAX_LISTED_NAMES]) + f", ... ({named} in all), who are ")


@pytest.mark.parametrize("camera", ["close_up", "Close-Up", "close up", "CLOSE_UP", " Close-up ", "point of view",
                                    "Medium-Close-Up", "closeup", "close--up", "close_upp", "POV", "zoom"])
def test_an_editor_checking_the_schema_accepts_the_spellings_the_validator_accepts(camera):
    """The published schema file, read by a real JSON Schema validator (as an editor reads it), takes a camera or
    transition spelling exactly when the pack's validator does: "Close-Up" was flagged by the schema's bare enum."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    for field, value in (("camera", camera), ("transition", camera.replace("close", "fade").replace("Close", "Fade"))):
        data = {"title": "T", "shots": [{"id": 1, "scene": "a room", "action": "A.", "duration": 2, field: value}]}
        try:
            load_script(json.dumps(data))
            accepted = True
        except ScriptError:
            accepted = False
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
        assert (not errors) == accepted, (field, value, accepted, [e.message for e in errors])


@pytest.mark.parametrize("written", ["1e3", "1e+3", "1.5e1", "-2E-1"])
def test_a_number_yaml_reads_as_text_is_explained(written):
    """YAML 1.1 reads ``1e3`` (an exponent without a decimal point and a sign) as text: the bare "expected a number,
    got text" left a user puzzled; the message says how to write it. A JSON script reads 1.5e1 as a number."""
    with pytest.raises(ScriptError) as err:
        load_script(f"title: T\nshots:\n  - {{id: 1, scene: a room, action: A., duration: {written}}}\n")
    assert f"expected a number, got text ('{written}': YAML reads a number with an exponent as text unless it has a " \
           "decimal point and a sign, 1.0e+3; or write the number out)" in str(err.value)
    assert load_script(json.dumps({"title": "T", "shots": [{"id": 1, "scene": "a", "action": "A.", "duration": 1.5e1}]}))
    with pytest.raises(ScriptError, match=r"duration: expected a number, got text$"):
        load_script("title: T\nshots:\n  - {id: 1, scene: a room, action: A., duration: soon}\n")


def test_an_unknown_camera_is_quoted_as_written_not_as_normalised():
    """The validator reads spellings of a choice alike ("Close-Up" is close_up), so pydantic saw "pov" for POV and the
    message quoted that; it quotes what the user wrote."""
    with pytest.raises(ScriptError) as err:
        load_script("title: T\nshots:\n  - {id: 1, scene: a room, action: A., duration: 2, camera: POV}\n"
                    "  - {id: 2, scene: a room, action: A., duration: 2, transition: Slide Left}\n")
    assert "shots[0].camera: 'POV' is not one of: extreme_wide" in str(err.value)
    assert "shots[1].transition: 'Slide Left' is not one of: cut" in str(err.value)


def test_too_long_a_movie_in_total():
    """Every shot may last 600 s, but 5000 of them would ask for 833 hours of video: the movie's total is held to
    four hours, and the refusal says how long the script's movie is."""
    data = base_script()
    data["shots"] = [{"id": i, "scene": "a room", "action": "nothing happens", "duration": 600} for i in range(24)]
    load_script(as_text(data, "json"))  # exactly four hours
    data["shots"].append({"id": "one more", "scene": "a room", "action": "nothing happens", "duration": 60})
    with pytest.raises(ScriptError, match=r"shots: the shots' durations add up to 14,460 seconds \(4\.0 hours\), more "
                                          r"than the limit of 14,400 seconds \(4 hours\) for one movie"):
        load_script(as_text(data, "json"))
