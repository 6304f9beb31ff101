"""The names of a project's keyframe and shot files, as every check reads them (issue: shot ids with a space).

``MovieProject.shot_file`` names a shot's video after its id as ``safe_folder_name`` cleans it, which keeps spaces:
``shots/shot_00000_opening shot.mp4``. The distributed payload allowed no space there, so a worker's shot with such
an id was refused by the master ("is not a keyframe or shot file of a project") and the distributed run failed. Every
name any release gave a shot must pass the manifest's entry check, the retiring of files and the payload check alike
(``project.PROJECT_FILES`` is their one definition); names no release gives, and names that leave ``shots/``, pass
none of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from moviedreamer_core.animate import animatic_backend, make_movie
from moviedreamer_core.distribution import payload as pl
from moviedreamer_core.distribution.participation import MASTER, Participation
from moviedreamer_core.distribution.results import gather, expected_of, share_payload
from moviedreamer_core.distribution.split import outlines_of_script, split_shots
from moviedreamer_core.paths import is_windows_device_name
from moviedreamer_core import project as projects
from moviedreamer_core.project import MovieProject
from moviedreamer_core.script import load_script

#: Shot ids a script may hold or a caller may pass: spaces, letters of other alphabets, emoji, punctuation, ids that
#: clean to nothing (the fallback ``shot``), Windows device names, separators, and ids longer than any limit.
ODD_IDS = ["opening shot", "Amélie (1)", "東京物語", "🎬 take 2, final!", "(a), [b]; {c}", "???", "...", " . _ ",
           "CON", "nul.v2", "COM1 .txt", "a/../b", "..\\..\\x", "  lead and trail  ", "-", "ends with a dot.",
           "a" * 39 + " b", "b" * 38 + " ..c", "x" * 200, "word " * 40, "tab\there", "new\nline", "7"]

_V1_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def _name_v1(shot_id: str) -> str:
    """The shot id part of the first releases (safe_folder_name of 9c421c9): cleaned, stripped, cut (so it could end
    in a space or a dot)."""
    return _V1_UNSAFE.sub("_", shot_id).strip(" ._")[:40] or "shot"


def _name_v2(shot_id: str) -> str:
    """... and of b5d0efd to a375d04: the same, with Windows device names given a ``_``."""
    cleaned = _V1_UNSAFE.sub("_", shot_id).strip(" ._")[:40]
    if is_windows_device_name(cleaned):
        stem, dot, rest = cleaned.partition(".")
        cleaned = (stem.rstrip(" ") + "_" + dot + rest)[:40]
    return "shot" if not cleaned or is_windows_device_name(cleaned) else cleaned


def _every_shot_name() -> dict[int, str]:
    """``{index: file}`` for every name this and earlier releases give the odd ids, each under its own index (five to
    eight digits: 0, 137, ..., and the largest the payload takes)."""
    names = []
    for shot_id in ODD_IDS:
        current = MovieProject.shot_file(None, 0, shot_id)[len("shots/shot_00000_"):-len(".mp4")]
        names += [n for n in dict.fromkeys([current, _name_v1(shot_id), _name_v2(shot_id)]) if n not in names]
    indices = [i * 137 for i in range(len(names) - 1)] + [99_999_999]
    return {i: f"shots/shot_{i:05d}_{n}.mp4" for i, n in zip(indices, names)}


def test_odd_ids_give_the_names_the_checks_are_made_for():
    """The ids above do give spaces, trailing spaces and dots (earlier releases), the fallback and long names."""
    names = list(_every_shot_name().values())
    assert "shots/shot_00000_opening shot.mp4" in names
    assert any(n.endswith(" .mp4") for n in names) and any(n.endswith("..mp4") for n in names), "earlier releases' cuts"
    assert any(n.endswith("_shot.mp4") for n in names) and any(n.endswith("_CON_.mp4") for n in names)
    assert any(len(n.split("_", 2)[2]) == 40 + len(".mp4") for n in names) and "shots/shot_99999999_7.mp4" in names


NOT_A_PROJECT_FILE = [
    "shots/shot_00001_../../x.mp4", "shots/shot_00001_a/b.mp4", "shots/../shot_00001_a.mp4", "../shots/shot_00001_a.mp4",
    "shots/shot_00001_a\\..\\..\\x.mp4", "/shots/shot_00001_a.mp4", "shots//shot_00001_a.mp4", "shots/shot_00001_.mp4",
    "shots/shot_00001_東京.mp4", "shots/shot_00001_a(1).mp4", "shots/shot_00001_a,b.mp4", "shots/shot_00001_\U0001f3ac.mp4",
    "shots/shot_00001_" + "a" * 41 + ".mp4", "shots/shot_00001_a.mp4\n", "shots/shot_00001_a\n.mp4",
    "shots/shot_00001_a\x00.mp4", "shots/shot_00001_a\tb.mp4", "shots/shot_000001_a.mp4", "shots/shot_1_a.mp4",
    "shots/shot_\u0660\u0660\u0660\u0660\u0661_a.mp4", "shots/shot_" + "1" * 9 + "_a.mp4", "shots/shot_00001_a.mp4/",
    "shots/shot_00001_a.mp4/../../x", "shots/shot_00001.mp4", "shot_00001_a.mp4", "keyframes/shot_00001_a.mp4",
    "keyframes/keyframe_00001.png/../../x.png", "keyframes/keyframe_000001.png", "manifest.json",
]


def _plant(root: Path, shots: dict[int, str]) -> MovieProject:
    """A project whose manifest records each ``{index: file}`` as a finished shot, with the files on disk."""
    MovieProject(str(root), "film").compact()
    project = MovieProject(str(root), "film")
    (Path(project.root) / "shots").mkdir(exist_ok=True)
    for rel in shots.values():
        if rel.count("/") == 1 and rel.startswith("shots/shot_") and "\x00" not in rel:
            Path(project.path(rel)).write_bytes(b"a shot")
    data = {"format": 1, "name": "film", "keyframes": {}, "movie": {"file": "film.mp4", "shots": []},
            "shots": {str(i): {"status": "done", "file": rel, "signature": f"s{i}"} for i, rel in shots.items()}}
    Path(project.manifest_path).write_text(json.dumps(data))
    return MovieProject(str(root), "film")


def _payload_names(names) -> list[str]:
    """The names a payload listing ``names`` (each sent with its bytes) brings through the master's check."""
    files = {n: n.encode("utf-8", "surrogatepass") for n in names}
    header = {"files": [{"name": n, "size": len(b), "sha256": pl.sha256(b), "sent": True} for n, b in files.items()]}
    return [e["name"] for e in pl.decode_all(pl.encode(pl.Payload(header, files)))[0].header["files"]]


def test_every_name_a_release_gave_a_shot_passes_every_check(tmp_path):
    shots = _every_shot_name()
    project = _plant(tmp_path, shots)
    assert project.dropped_entries == [] and {int(k): e["file"] for k, e in project.manifest["shots"].items()} == shots
    assert all(project.shot_entry(i, f"s{i}") for i in shots), "kept, so a rerun reuses them"
    assert _payload_names(shots.values()) == list(shots.values()), "a worker's shots reach the master"
    assert {rel: projects.project_file(rel) for rel in shots.values()} == {rel: ("shot", i) for i, rel in shots.items()}
    for i, rel in shots.items():  # the sidecars the project writes beside them, and the keyframes
        assert projects.project_file(project.sidecar_file(i)) == ("sidecar", i)
        assert projects.project_file(project.keyframe_file(i)) == ("keyframe", i)
        assert projects.project_file(project.latent_file(i)) == ("latent", i)
    assert _payload_names([project.sidecar_file(0), project.keyframe_file(0), project.latent_file(0)])
    # a script without them moves every one aside: by its entry, and (files no entry names) by its name in shots/
    for listed_by in ("entry", "name"):
        moved = project.retire_shots({})
        assert sorted(m.split("/", 2)[2] for m in moved) == sorted(shots.values()), listed_by
        assert not list((Path(project.root) / "shots").iterdir()) and project.manifest["shots"] == {}
        for rel in shots.values():
            Path(project.path(rel)).write_bytes(b"a shot")


@pytest.mark.parametrize("name", NOT_A_PROJECT_FILE)
def test_names_no_release_gives_pass_no_check(tmp_path, name):
    with pytest.raises(ValueError, match="is not a keyframe or shot file of a project"):
        _payload_names([name])
    project = _plant(tmp_path, {1: name})
    assert project.manifest["shots"] == {} and project.dropped_entries == ["shots['1']"]
    assert projects.project_file(name) is None


def _script(ids) -> str:
    return json.dumps({"title": "Odd ids", "shots": [{"id": shot_id, "scene": f"place {i}", "action": f"a {i}",
                                                       "duration": 1} for i, shot_id in enumerate(ids)]})


SCRIPT_IDS = ["opening shot", "Amélie (1)", "東京物語", "🎬 take 2, final!", "???", "CON", "a" * 39 + " b", "7"]


def _movie(project: MovieProject, script, only_shots=None):
    kf = np.full((48, 64, 3), 90, np.uint8)
    return make_movie(project, script, lambda i: kf, fps=12, frames_per_clip=25, size=(64, 48),
                      backend=animatic_backend(12, (64, 48)), backend_name="animatic", only_shots=only_shots)


def test_shots_with_odd_ids_are_made_once(tmp_path):
    """A shot whose entry a reopened project dropped would be made again on every run."""
    script = load_script(_script(SCRIPT_IDS))
    first = _movie(MovieProject(str(tmp_path), "odd"), script)
    assert first.rendered == list(range(len(SCRIPT_IDS)))
    assert Path(first.shot_files[0]).name == "shot_00000_opening shot.mp4"
    again = MovieProject(str(tmp_path), "odd")
    assert again.dropped_entries == []
    assert _movie(again, script).rendered == [], "every shot is reused"


def test_a_workers_shots_with_odd_ids_are_gathered(tmp_path):
    """The defect: a worker's payload carrying ``shots/shot_00004_opening shot.mp4`` was refused by the master. Here
    a worker makes its share of real shots in its own folder and sends them; the master gathers and keeps them."""
    ids = ["s0", "s1", "s2", "s3"] + SCRIPT_IDS[:4]
    script = load_script(_script(ids))
    outlines = outlines_of_script(script)
    who = Participation("job1", MASTER, (MASTER, "w1"))
    shares = split_shots(outlines, 2)
    assert tuple(shares[1].shots) == (4, 5, 6, 7), shares
    worker = MovieProject(str(tmp_path / "worker"), "film", writer="w1")
    for k in shares[1].keyframes:
        worker.save_keyframe(k, np.full((48, 64, 3), k, np.uint8), f"sig{k}", {})
    _movie(worker, script, only_shots=shares[1].shots)
    sent = share_payload(worker, Participation("job1", "w1", who.participants), shares[1], send_files=True, fps=12.0,
                         project_name="film", script_hash="hash")
    master = MovieProject(str(tmp_path / "master"), "film")
    got = gather(master, pl.decode_all(pl.encode(sent)), "job1", expected_of("film", "hash", outlines, who))
    assert got.shots == {4, 5, 6, 7} and not got.problems, got.problems
    with master.compacting():
        pass
    again = MovieProject(str(tmp_path / "master"), "film")
    assert again.dropped_entries == [] and again.manifest["shots"]["4"]["file"] == "shots/shot_00004_opening shot.mp4"
    assert all(again.shot_check(s, worker.manifest["shots"][str(s)]["signature"]) == "unchanged" for s in (4, 5, 6, 7))
