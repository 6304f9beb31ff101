"""A manifest.json edited by hand or made on another machine: its entries' file names never lead out of the project
folder, and entries of the wrong type are left out rather than failing every run."""

import json

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
