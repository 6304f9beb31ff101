"""A manifest.json edited by hand or made on another machine: its entries' file names never lead out of the project
folder, and entries of the wrong type are left out rather than failing every run."""

import json
import logging

import pytest

from moviedreamer_core.project import MovieProject


def _plant(tmp_path, manifest_changes: dict) -> MovieProject:
    out = tmp_path / "output"
    MovieProject(str(out), "film").compact()
    project = MovieProject(str(out), "film")
    path = project.manifest_path
    data = {"format": 1, "name": "film", "keyframes": {}, "shots": {}}
    data.update(manifest_changes)
    with open(path, "w") as f:
        json.dump(data, f)
    return MovieProject(str(out), "film")


def test_a_shot_entry_naming_a_file_outside_the_project_moves_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # the project folder is <tmp>/output/moviedreamer/film: three levels up is <tmp>
    project = _plant(tmp_path, {"shots": {"9": {"status": "done", "file": "../../../victim.txt", "signature": "x"}},
                                "movie": {"file": "../../../victim.txt", "shots": []}})
    project.retire_shots({0: "shots/shot_00000_s01.mp4"})
    assert victim.read_text() == "precious"
    assert not list((tmp_path / "output").rglob("victim.txt"))


def test_entries_of_the_wrong_type_are_left_out(tmp_path):
    project = _plant(tmp_path, {"shots": {"0": "oops", "x": {}}, "keyframes": []})
    assert project.manifest["shots"] == {} and project.manifest["keyframes"] == {}
    assert project.shot_entry(0, "sig") is None
    project.retire_shots({0: "shots/shot_00000_s01.mp4"})
    assert project.keyframe_entry(0) is None


def test_what_the_pack_writes_is_kept(tmp_path):
    entry = {"status": "done", "file": "shots/shot_00003_my shot-1.mp4", "signature": "s"}
    project = _plant(tmp_path, {"shots": {"3": entry},
                                "keyframes": {"0": {"status": "done", "file": "keyframes/keyframe_00000.png"}},
                                "movie": {"file": "film.mp4", "shots": []}})
    assert project.manifest["shots"]["3"] == entry and "0" in project.manifest["keyframes"]
    assert project.manifest["movie"]["file"] == "film.mp4"
    assert project.dropped_entries == []


def test_a_manifest_or_journal_nested_thousands_deep_reads_as_a_damaged_one(tmp_path):
    out = tmp_path / "output"
    MovieProject(str(out), "film").compact()
    root = out / "moviedreamer" / "film"
    (root / "manifest.json").write_text('{"a":' + "[" * 100_000 + "]" * 100_000 + "}")
    (root / "manifest.journal").write_text('{"key":["x"],"value":' + "[" * 100_000 + "]" * 100_000 + "}\n")
    project = MovieProject(str(out), "film")
    assert project.manifest["keyframes"] == {} and "x" not in project.manifest


#: manifest.json contents that are no manifest -> what the log says of them after the file's path
DAMAGED_MANIFESTS = {
    "cut short": ('{"format": 1, "name": "film", "keyframes": {"0": {"status": "do', " is not valid JSON (line 1"),
    "deep": ("[" * 100_000 + "]" * 100_000, " is not valid JSON (nested too deeply)"),
    "a list": ('[{"format": 1}]', " is not a JSON object (got list)"),
    "another format": ('{"format": 99, "keyframes": {}}', " is of another format ('99')"),
}


@pytest.mark.parametrize("name", list(DAMAGED_MANIFESTS))
def test_a_damaged_manifest_starts_the_project_afresh_and_the_log_names_it(tmp_path, caplog, name):
    """``manifest.json`` is read by ``project.read_manifest_file`` (bounded, ``text_files``' JSON object reader): a
    damaged one gives an empty manifest, as before, and now a warning naming the file (before: silence, and every
    keyframe made again without a word)."""
    text, words = DAMAGED_MANIFESTS[name]
    out = tmp_path / "output"
    MovieProject(str(out), "film").compact()
    path = out / "moviedreamer" / "film" / "manifest.json"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="moviedreamer_core.project"):
        project = MovieProject(str(out), "film")
    assert project.manifest["keyframes"] == {} and project.manifest["shots"] == {}
    assert f"MovieDreamer: {path}{words}" in caplog.text, caplog.text
    assert "every keyframe and shot is made again" in caplog.text


def test_a_manifest_larger_than_the_limit_is_not_read(tmp_path, caplog):
    """A ``manifest.json`` past ``MAX_MANIFEST_BYTES`` (a sparse file here: no disk, and refused by its size before any
    read) is no manifest; before, it was read whole into memory."""
    from moviedreamer_core.project import MAX_MANIFEST_BYTES

    out = tmp_path / "output"
    MovieProject(str(out), "film").compact()
    path = out / "moviedreamer" / "film" / "manifest.json"
    with open(path, "r+b") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)
    with caplog.at_level(logging.WARNING, logger="moviedreamer_core.project"):
        project = MovieProject(str(out), "film")
    assert project.manifest["keyframes"] == {}
    assert f"{path} cannot be read (larger than the limit of {MAX_MANIFEST_BYTES:,} bytes)" in caplog.text, caplog.text


def test_read_regular_refuses_a_file_past_its_limit_by_size_and_by_what_it_read(tmp_path):
    import errno

    from moviedreamer_core.files import read_regular

    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular(str(path), limit=10) == b"x" * 10 and read_regular(str(path)) == b"x" * 10
    with pytest.raises(OSError) as refused:
        read_regular(str(path), limit=9)
    assert refused.value.errno == errno.EFBIG and "larger than the limit of 9 bytes" in str(refused.value)


def test_a_new_project_logs_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="moviedreamer_core.project"):
        MovieProject(str(tmp_path / "output"), "film")
    assert caplog.text == ""
