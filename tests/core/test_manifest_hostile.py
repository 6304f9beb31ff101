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


def test_an_entry_naming_the_file_of_another_index_is_left_out_and_that_file_stays(tmp_path):
    """A keyframe's or shot's entry must name its own index's file: shot 2's entry naming shot 7's video (a manifest
    edited, or damaged) had ``retire_shots`` move shot 7's good video aside; entries keyed as the pack never keys them
    (``"03"``, never looked up; 5,000 digits, on which ``retire_keyframes``' ``int`` raised) are left out as well."""
    out = tmp_path / "output"
    MovieProject(str(out), "film").compact()
    shots = out / "moviedreamer" / "film" / "shots"
    shots.mkdir()
    (shots / "shot_00007_h.mp4").write_bytes(b"shot 7")
    own = {"status": "done", "file": "keyframes/keyframe_00005.png", "signature": "k5"}
    project = _plant(tmp_path, {
        "keyframes": {"3": {**own, "signature": "k3"}, "5": own, "03": {}, "9" * 5000: {}},
        "shots": {"2": {"status": "done", "file": "shots/shot_00007_h.mp4", "signature": "s2"}}})
    assert sorted(project.dropped_entries) == sorted([
        "keyframes['3'] (the file of keyframe 5)", "keyframes['03']", f"keyframes[{'9' * 20!r}]",
        "shots['2'] (the file of shot 7)"])
    assert project.manifest["keyframes"] == {"5": own} and project.manifest["shots"] == {}
    assert project.retire_keyframes(8) == []
    assert project.retire_shots({i: project.shot_file(i, "abcdefgh"[i]) for i in range(8)}) == []
    assert (shots / "shot_00007_h.mp4").read_bytes() == b"shot 7"


def _movie_with_shot_0_naming_shot_1s_file(tmp_path):
    """A 3-shot animatic movie made once, then its manifest edited so that shot 0's entry names shot 1's video (its
    signature and file record as a reusable entry would hold them); returns ``(output folder, make the movie)``."""
    import numpy as np

    from moviedreamer_core.animate import animatic_backend, make_movie
    from moviedreamer_core.script import load_script

    script = load_script(json.dumps({"title": "t", "shots": [
        {"id": f"s{i}", "scene": f"place {i}", "action": f"a {i}", "duration": 1} for i in range(3)]}))
    pictures = {k: np.full((48, 64, 3), 40 * k, np.uint8) for k in range(script.n_keyframes)}

    def movie(project, only_shots=None):
        return make_movie(project, script, pictures.__getitem__, fps=12, frames_per_clip=25, size=(64, 48),
                          backend=animatic_backend(12, (64, 48)), backend_name="animatic", only_shots=only_shots)

    out = str(tmp_path / "output")
    with MovieProject(out, "film", exclusive=True).compacting() as project:
        assert movie(project).rendered == [0, 1, 2]
    data = json.loads(open(project.manifest_path).read())
    data["shots"]["0"] = {**data["shots"]["1"], "signature": data["shots"]["0"]["signature"]}
    with open(project.manifest_path, "w") as f:
        json.dump(data, f)
    return out, movie


def _names(result) -> list[str]:
    return [path.rsplit("/", 1)[1] for path in result.shot_files]


def test_a_resumed_movie_does_not_take_a_shot_from_another_shots_file(tmp_path):
    """The rerun of a movie whose shot 0 entry names shot 1's video: shot 0 is made again and shot 1's video is reused
    where it is. Before, the rerun moved shot 1's video aside as a file of no current shot and made both again."""
    out, movie = _movie_with_shot_0_naming_shot_1s_file(tmp_path)
    with MovieProject(out, "film", exclusive=True).compacting() as again:
        assert again.dropped_entries == ["shots['0'] (the file of shot 1)"]
        result = movie(again)
    assert result.rendered == [0] and result.stale == [], (result.rendered, result.stale)
    assert _names(result) == [f"shot_{i:05d}_s{i}.mp4" for i in range(3)]


def test_a_participants_resume_does_not_take_a_shot_from_another_shots_file(tmp_path):
    """A participant's share (``only_shots``: nothing is moved aside first) reused shot 1's video as shot 0: the
    movie's first two shots were one video (an entry's file was not checked against its index)."""
    out, movie = _movie_with_shot_0_naming_shot_1s_file(tmp_path)
    result = movie(MovieProject(out, "film", writer="w1"), only_shots=(0, 1, 2))
    assert result.rendered == [0] and _names(result) == [f"shot_{i:05d}_s{i}.mp4" for i in range(3)], _names(result)
