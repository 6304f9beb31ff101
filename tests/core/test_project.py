"""The movie project folder (issue 19): a manifest whose cost per update does not grow with the movie and that
survives a kill, temporary files of a killed run removed by the next (and only those nobody writes), one folder
per title in any script, and preview sidecars no larger than needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moviedreamer_core.animate import animatic_backend, make_movie
from moviedreamer_core.files import atomic_write_bytes
from moviedreamer_core.project import JOURNAL_FILE, MovieProject, project_folder_name
from moviedreamer_core.script import load_script

from ..killed_writer import writing

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ the manifest


def test_an_update_appends_one_line_and_opening_compacts_the_journal(tmp_path):
    project = MovieProject(str(tmp_path), "journal")
    project.compact()
    whole = Path(project.manifest_path).read_bytes()
    for k in range(200):
        project.record_keyframe(k, f"sig{k}", {"shot": f"s{k}"})
    journal = Path(project.root) / JOURNAL_FILE
    assert Path(project.manifest_path).read_bytes() == whole, "an update does not rewrite manifest.json"
    assert len(journal.read_bytes().splitlines()) == 200, "one line per update"
    again = MovieProject(str(tmp_path), "journal")
    assert not journal.exists(), "opening the project folds the journal into manifest.json"
    manifest = json.loads(Path(again.manifest_path).read_text())
    assert manifest["keyframes"]["199"] == {"status": "done", "file": "keyframes/keyframe_00199.png",
                                            "signature": "sig199", "shot": "s199"}
    assert len(manifest["keyframes"]) == 200 and manifest["name"] == "journal"


def test_a_line_cut_short_is_skipped(tmp_path):
    project = MovieProject(str(tmp_path), "cut")
    project.record_keyframe(0, "a", {})
    project.record_keyframe(1, "b", {})
    journal = Path(project.root) / JOURNAL_FILE
    journal.write_bytes(journal.read_bytes()[:-9])  # the second update was cut by a kill mid-line
    resumed = MovieProject(str(tmp_path), "cut")
    assert resumed.keyframe_entry_signature(0) == "a" and resumed.keyframe_entry_signature(1) is None
    assert not journal.exists()
    resumed.record_keyframe(1, "c", {})
    assert MovieProject(str(tmp_path), "cut").keyframe_entry_signature(1) == "c"


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from moviedreamer_core.project import MovieProject
    project = MovieProject(sys.argv[2], "killed")
    start = int(sys.argv[3])
    payload = "x" * 2000  # entries of a realistic size: prompts, seeds, settings
    for k in range(start, start + 100000):
        project.record_keyframe(k, f"sig{k}", {"prompt": payload, "shot": f"s{k}"})
        if k % 97 == 0:
            project.compact()  # kills land in compactions too
        print(k, flush=True)
""")


def test_a_kill_during_updates_leaves_a_readable_project_with_every_finished_update(tmp_path):
    """A real ``kill -9`` of a child process writing the manifest as fast as it can (so the kill lands inside an
    update or a compaction), five times over: every time the project opens, ``manifest.json`` parses, and every
    update the child reported finished is there, whole."""
    rng = np.random.default_rng(0)
    start = 0
    for round_ in range(5):
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(ROOT), str(tmp_path), str(start)],
                                 stdout=subprocess.PIPE, text=True)
        target = start + int(rng.integers(150, 600))
        finished = start - 1
        for line in child.stdout:
            finished = int(line)
            if finished >= target:
                break
        time.sleep(float(rng.uniform(0, 0.02)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        project = MovieProject(str(tmp_path), "killed")
        json.loads(Path(project.manifest_path).read_text())
        entries = project.manifest["keyframes"]
        assert all(project.keyframe_entry_signature(k) == f"sig{k}" for k in range(finished + 1)), round_
        assert all(e["signature"] == f"sig{k}" and e["prompt"] == "x" * 2000 for k, e in
                   ((int(k), e) for k, e in entries.items()))
        start = max(int(k) for k in entries) + 1


# ------------------------------------------------------------------------------------ temporary files


def test_temp_files_of_a_killed_run_are_removed_by_the_next_and_only_those(tmp_path):
    project = MovieProject(str(tmp_path), "hygiene")
    shots = Path(project.root) / "shots"
    with writing(shots / "shot_00000_a.mp4") as tmp:
        assert tmp.parent == shots and tmp.name.startswith(".tmp_") and tmp.suffix == ".mp4"
        # not ours to remove: other names, and the project's stale/ folder
        (shots / ".tmp_notmine.mp4").write_bytes(b"x")
        (Path(project.root) / "notes.tmp").write_bytes(b"x")
        (Path(project.root) / "stale").mkdir()
        (Path(project.root) / "stale" / ".tmp_abcdefgh.mp4").write_bytes(b"x")
        # a file another process is writing right now stays, however old it looks
        os.utime(tmp, (time.time() - 86400, time.time() - 86400))
        assert MovieProject(str(tmp_path), "hygiene").removed_temp_files == [] and tmp.exists()
    assert tmp.exists(), "the kill left the partial shot behind"
    # the kill also left a half-written keyframe and manifest in other folders of the project
    (Path(project.root) / "keyframes" / ".tmp_0k1j2h3g.png").write_bytes(b"half a png")
    (Path(project.root) / ".tmp_a1b2c3d4.json").write_bytes(b"{")
    resumed = MovieProject(str(tmp_path), "hygiene")
    assert sorted(resumed.removed_temp_files) == sorted(
        [".tmp_a1b2c3d4.json", "keyframes/.tmp_0k1j2h3g.png", f"shots/{tmp.name}"])
    assert not tmp.exists()
    assert (shots / ".tmp_notmine.mp4").exists() and (Path(project.root) / "notes.tmp").exists()
    assert (Path(project.root) / "stale" / ".tmp_abcdefgh.mp4").exists()


def test_files_written_through_the_lock_still_land_whole(tmp_path):
    target = tmp_path / "a" / "b.json"
    atomic_write_bytes(str(target), b"{}")
    assert target.read_bytes() == b"{}" and not list(target.parent.glob(".tmp_*"))


def _descriptors_on(path: str) -> list[int]:
    """This process's open descriptors on ``path`` (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found.append(int(fd))
        except OSError:
            pass
    return found


def test_without_flock_nothing_holds_the_temporary_file_open_when_it_replaces_the_target(tmp_path, monkeypatch):
    """Windows has no ``flock`` and refuses to rename a file that has a handle open (``mkstemp``'s handle does not
    share deletion): there ``atomic_path`` must hold no descriptor on its temporary file when ``os.replace`` runs, or
    every file the pack writes fails with a sharing violation. The same code path runs here with ``flock`` taken away;
    with ``flock`` the descriptor holds the lock to the end, as the killed-writer test needs."""
    import moviedreamer_core.files as files

    open_at_replace = []
    replace = os.replace

    def watching_replace(src, dst):
        open_at_replace.append(_descriptors_on(os.path.realpath(src)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    atomic_write_bytes(str(tmp_path / "with_flock.json"), b"{}")
    monkeypatch.setattr(files, "fcntl", None)
    atomic_write_bytes(str(tmp_path / "without_flock.json"), b"{}")
    with pytest.raises(RuntimeError):  # a failed write leaves no temporary file behind there either
        with files.atomic_path(str(tmp_path / "failed.json")) as tmp:
            Path(tmp).write_bytes(b"{")
            raise RuntimeError("the writer failed")
    assert len(open_at_replace) == 2 and len(open_at_replace[0]) == 1 and open_at_replace[1] == []
    assert (tmp_path / "without_flock.json").read_bytes() == b"{}" and not list(tmp_path.glob(".tmp_*"))
    assert not (tmp_path / "failed.json").exists()


# ------------------------------------------------------------------------------------ project folders


def test_distinct_titles_in_any_script_get_distinct_folders(tmp_path):
    titles = ["東京物語", "京都物語", "Москва", "Киев", "???", "!!!", "Amélie", "Amelie", "Am\u00e9lie 2", "My Movie"]
    names = [project_folder_name(t) for t in titles]
    assert len(set(names)) == len(titles), names
    assert project_folder_name("My Movie: Part 1/2") == "My Movie_ Part 1_2", "ASCII titles keep their folder"
    assert project_folder_name("Amelie") == "Amelie"
    assert names[0].startswith("movie-") and names[6].startswith("Am_lie-")
    roots = {MovieProject(str(tmp_path), t).root for t in titles}
    assert len(roots) == len(titles)


def test_a_name_with_a_lone_surrogate_gets_a_folder_and_its_work_is_kept(tmp_path):
    """A /prompt body is JSON, which may carry a lone surrogate ("\\udcff") in project_name: hashing the name for the
    folder raised UnicodeEncodeError deep in the run (after the planner had run; an audit)."""
    names = ["\udcff", "take\ud800 2", "take\udc00 2"]
    roots = set()
    for name in names:
        project = MovieProject(str(tmp_path), name, exclusive=True)
        with project.compacting():
            project.record_keyframe(0, "sig", {"shot": "s1"})
        roots.add(project.root)
        again = MovieProject(str(tmp_path), name)
        assert again.root == project.root and again.manifest["keyframes"]["0"]["signature"] == "sig"
    assert len(roots) == len(names)


def test_a_project_an_earlier_version_filed_under_the_plain_name_resumes(tmp_path):
    """Before, every title without ASCII letters went to ``movie/``: the project whose title that folder records
    keeps it; another such title gets its own folder."""
    legacy = tmp_path / "moviedreamer" / "movie"
    legacy.mkdir(parents=True)
    (legacy / "manifest.json").write_text(json.dumps({"format": 1, "project": "movie", "title": "東京物語",
                                                      "keyframes": {"0": {"status": "done", "signature": "s"}},
                                                      "shots": {}}))
    assert MovieProject(str(tmp_path), "東京物語").root == str(legacy.resolve())
    other = MovieProject(str(tmp_path), "京都物語")
    assert other.root != str(legacy.resolve()) and other.manifest["keyframes"] == {}
    assert MovieProject(str(tmp_path), "東京物語").manifest["name"] == "東京物語"


def test_a_long_title_cut_at_a_space_gets_a_folder_without_it_and_its_earlier_folder_resumes(tmp_path):
    """A title cut to 80 characters at a space gave a folder ending in a space, which Windows creates without it (so
    the path to its keyframes/ failed there): the cut is trimmed now, and a project an earlier version filed under
    the old name keeps it, by its manifest."""
    title = "x" * 79 + " and the rest of a long title"
    assert project_folder_name(title) == "x" * 79 and project_folder_name("y" * 79 + ". z") == "y" * 79
    old = tmp_path / "moviedreamer" / ("x" * 79 + " ")
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"format": 1, "name": title, "keyframes": {}, "shots": {}}))
    assert MovieProject(str(tmp_path), title).root == str(old.resolve())
    other = "x" * 79 + " another long title"
    assert MovieProject(str(tmp_path), other).root == str((tmp_path / "moviedreamer" / ("x" * 79)).resolve())


def test_two_titles_that_clean_to_one_folder_name_get_a_folder_each(tmp_path):
    """"Hello, World" and "Hello; World" both clean to ``Hello_ World``: the second no longer moves the first one's
    keyframes to stale/ (it gets its own hashed folder), and each resumes its own. Windows' folders ignore case, so
    there "my movie" finds the folder of "My Movie": simulated here by a folder that records another name."""
    first = MovieProject(str(tmp_path), "Hello, World")
    first.compact()
    second = MovieProject(str(tmp_path), "Hello; World")
    second.compact()
    assert Path(first.root).name == "Hello_ World" and Path(second.root).name.startswith("Hello_ World-")
    assert MovieProject(str(tmp_path), "Hello, World").root == first.root
    assert MovieProject(str(tmp_path), "Hello; World").root == second.root
    seen_by_windows = tmp_path / "moviedreamer" / "my movie"
    seen_by_windows.mkdir(parents=True)
    (seen_by_windows / "manifest.json").write_text(json.dumps({"format": 1, "name": "My Movie", "keyframes": {},
                                                                "shots": {}}))
    assert Path(MovieProject(str(tmp_path), "my movie").root).name.startswith("my movie-")
    unnamed = tmp_path / "moviedreamer" / "Old Project"  # a manifest that names nobody: still shared, as before
    unnamed.mkdir(parents=True)
    (unnamed / "manifest.json").write_text(json.dumps({"format": 1, "keyframes": {}, "shots": {}}))
    assert MovieProject(str(tmp_path), "Old Project").root == str(unnamed.resolve())
    titled = tmp_path / "moviedreamer" / "lighthouse"  # an earlier version recorded the script's title, not the name
    titled.mkdir(parents=True)
    (titled / "manifest.json").write_text(json.dumps({"format": 1, "title": "The Lighthouse", "keyframes": {},
                                                      "shots": {}}))
    assert MovieProject(str(tmp_path), "lighthouse").root == str(titled.resolve())


# -------------------------------------------------------------------------------------------- sidecars


def _smooth_keyframes(n: int, h: int = 240, w: int = 416) -> list:
    """Keyframes like real ones: smooth shading and a few shapes (random noise would make any file large)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        img = np.stack([xx / w * 255, yy / h * 255, np.full_like(xx, 40.0 * i % 255)], -1)
        cy, cx = h / 2 + 30 * np.sin(i), w / 3 + 50 * i % w
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 40 ** 2] = (240, 200, 60)
        out.append(img.astype(np.uint8))
    return out


def test_preview_sidecars_are_a_small_part_of_their_shot(tmp_path):
    """The sidecar held raw preview frames and the full-size last frame: 26 times this (very compressible) shot.
    Now JPEG previews only, a few kB each (the last frame is decoded from the shot when a following shot needs it)."""
    shots = "".join(f"  - id: s{i}\n    scene: place {i}\n    action: a {i}\n    duration: 3\n    camera: wide\n"
                    for i in range(3))
    script = load_script(f"title: Sidecars\nshots:\n{shots}")
    kf = _smooth_keyframes(script.n_keyframes)
    result = make_movie(MovieProject(str(tmp_path), "sidecars"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                        size=(416, 240), backend=animatic_backend(12, (416, 240)), backend_name="animatic")
    folder = Path(result.root) / "shots"
    for i, shot in enumerate(result.shot_files):
        sidecar = folder / f"shot_{i:05d}.preview.safetensors"
        size, shot_size = sidecar.stat().st_size, Path(shot).stat().st_size
        assert size <= 0.5 * shot_size and size <= 3 * 6000, (size, shot_size)
    assert len(result.preview) == 9 and result.preview[0].shape == (147, 256, 3)


def test_a_shot_made_after_a_kept_one_still_dissolves_from_its_last_frame(tmp_path):
    """The last frame of a kept shot is decoded from its file when the next shot (a dissolve) is made again."""
    shots = "".join(f"  - id: s{i}\n    scene: place {i}\n    action: a {i}\n    duration: 1\n    transition: dissolve\n"
                    for i in range(2))
    script = load_script(f"title: Dissolve\nshots:\n{shots}")
    kf = _smooth_keyframes(2, 48, 64)
    seen = []

    def backend(timing, shot, keyframes, previous_last):
        seen.append(previous_last)
        return animatic_backend(12, (64, 48))(timing, shot, keyframes, previous_last)

    def movie():
        seen.clear()
        return make_movie(MovieProject(str(tmp_path), "dissolve"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                          size=(64, 48), backend=backend, backend_name="animatic")

    first = movie()
    last_of_shot_0 = seen[1]
    Path(first.shot_files[1]).unlink()
    again = movie()
    assert again.rendered == [1] and np.array_equal(seen[0], last_of_shot_0)


@pytest.mark.parametrize("folder", ["keyframes", "shots", "stale", "journals"])
def test_a_project_whose_subfolder_links_outside_it_is_refused(tmp_path, folder):
    """A link at ``keyframes/`` (or ``shots/``, ``stale/``, ``journals/``) of a project folder that leads out of it would
    have every keyframe, shot or moved-aside movie written wherever it points (found by queueing the toy workflow
    with such a link planted in ``output/``): the project is refused, naming the folder, before anything is written."""
    from moviedreamer_core.paths import UnsafePathError

    output, outside = tmp_path / "output", tmp_path / "outside"
    outside.mkdir()
    root = Path(MovieProject(str(output), "linked").root)
    (root / folder).mkdir(exist_ok=True)
    os.rmdir(root / folder)
    os.symlink(outside, root / folder)
    with pytest.raises(UnsafePathError, match=f'its "{folder}" folder is a link that leads outside it'):
        MovieProject(str(output), "linked")
    assert list(outside.iterdir()) == []
    # a link that stays inside the project folder is the user's own business
    os.unlink(root / folder)
    (root / "elsewhere").mkdir()
    os.symlink(root / "elsewhere", root / folder)
    MovieProject(str(output), "linked")


@pytest.mark.parametrize("rel", ["journals/x.jsonl", "manifest.journal", "manifest.json", "keyframes/kf_00001.png",
                                 "shots/shot_00001_a.mp4", "movie.mp4"])
def test_a_project_holding_a_link_to_a_file_outside_it_is_refused_and_the_file_left_alone(tmp_path, rel):
    """Found by an audit: a link planted as ``journals/x.jsonl`` had an ordinary run empty the file it led to, outside
    the output folder (the master folds writers' journals in and empties them in place), and read its lines into the
    manifest. A project holding a link that leads outside it is refused, naming the file, and nothing is written."""
    from moviedreamer_core.paths import UnsafePathError

    output, victim = tmp_path / "output", tmp_path / "victim.txt"
    victim.write_text('{"key": ["title"], "value": "planted"}\n')
    project = MovieProject(str(output), "linked")
    project.save_keyframe(0, np.zeros((8, 8, 3), np.uint8), "sig", {})
    project.compact()
    root = Path(project.root)
    (root / rel).parent.mkdir(exist_ok=True)
    if (root / rel).exists():
        (root / rel).unlink()
    os.symlink(victim, root / rel)
    with pytest.raises(UnsafePathError, match=f'"{rel}" is a link that leads outside it'):
        MovieProject(str(output), "linked")
    assert victim.read_text() == '{"key": ["title"], "value": "planted"}\n'
    # a link that stays inside the project folder is the user's own business
    os.unlink(root / rel)
    (root / "mine.txt").write_text("")
    os.symlink(root / "mine.txt", root / rel)
    MovieProject(str(output), "linked")


def test_a_manifest_and_a_journal_linked_inside_the_project_are_read_through_their_links(tmp_path):
    """Links that stay inside the project folder are the user's own (``_check_links``); the manifest and the journals
    are read and written through them (a review audit: opened without following links, a manifest linked inside was
    taken for none and every finished keyframe would have been made again)."""
    project = MovieProject(str(tmp_path), "inside")
    project.save_keyframe(0, np.zeros((8, 8, 3), np.uint8), "sig", {})
    project.compact()
    root = Path(project.root)
    os.replace(root / "manifest.json", root / "manifest_real.json")
    os.symlink("manifest_real.json", root / "manifest.json")
    again = MovieProject(str(tmp_path), "inside")
    assert again.keyframe_entry(0) is not None
    again.save_keyframe(1, np.zeros((8, 8, 3), np.uint8), "sig1", {})  # to the journal, then compacted
    os.replace(root / "manifest.journal", root / "journal_real")
    os.symlink("journal_real", root / "manifest.journal")
    third = MovieProject(str(tmp_path), "inside")
    assert third.keyframe_entry(1) is not None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("rel", ["manifest.json", "journals/x.jsonl", "keyframes/kf_00000.png"])
def test_a_named_pipe_in_a_project_is_refused_at_once(tmp_path, rel):
    """A named pipe as ``manifest.json`` blocked the server's queue for ever (opening it waits for a writer): the
    project is refused at once, naming it (``folder_for``, which reads the folder's manifest to see whose it is before
    the project is opened, does not wait on it either)."""
    import threading

    from moviedreamer_core.paths import UnsafePathError

    output = tmp_path / "output"
    root = Path(MovieProject(str(output), "piped").root)
    (root / rel).parent.mkdir(exist_ok=True)
    os.mkfifo(root / rel)
    outcome = []

    def open_it():
        try:
            MovieProject(str(output), "piped")
        except UnsafePathError as e:
            outcome.append(str(e))
    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the blocked open go, then fail
        with open(root / rel, "wb"):
            pass
        pytest.fail("opening the project waited on the pipe")
    assert f'"{rel}" is neither a file nor a folder' in outcome[0]


def test_a_keyframe_changed_on_disk_is_not_taken_as_made(tmp_path):
    """The manifest records each keyframe file's SHA-256: a picture edited or replaced on disk (still a valid PNG, the
    same size) is made again rather than reused, and in a distributed run sent to the master (found by an audit: a
    worker's tampered keyframe went into the master's movie). Entries written before the hash was recorded are read as
    before."""
    project = MovieProject(str(tmp_path), "hashes")
    image = np.zeros((8, 8, 3), np.uint8)
    for k in range(3):
        project.save_keyframe(k, image + k, f"sig{k}", {})
    path = tmp_path / "moviedreamer" / "hashes" / project.keyframe_file(1)
    Image.fromarray(255 - image).save(path)  # another picture, a valid PNG
    older = project.keyframe_entry(2)
    project.record_keyframe(2, "sig2", {k: v for k, v in older.items() if k not in ("status", "file", "signature", "sha256")})
    again = MovieProject(str(tmp_path), "hashes")
    assert again.keyframe_done(0, "sig0")
    assert not again.keyframe_done(1, "sig1")
    assert again.keyframe_done(2, "sig2"), "an entry without a hash (an earlier version's) is taken as before"
    assert "sha256" in again.keyframe_entry(0)


def test_a_keyframe_file_replaced_by_a_decompression_bomb_is_made_again(tmp_path):
    """A keyframe PNG over Pillow's bomb limit put in a project's folder (an entry of an earlier version keeps no
    SHA-256, so the picture is opened): made again, not a DecompressionBombError out of the render (an audit)."""
    from moviedreamer_core.project import KeyframeSet

    project = MovieProject(str(tmp_path), "bomb")
    project.record_keyframe(0, "sig0", {})  # an earlier version's entry: no sha256
    path = tmp_path / "moviedreamer" / "bomb" / project.keyframe_file(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (14000, 13000)).save(path)  # 182 megapixels in a few kB
    assert project.load_keyframe(0) is None and not project.keyframe_done(0, "sig0")
    with pytest.raises(ValueError, match="can not be read"):
        KeyframeSet(str(path.parents[1]), 1, 8, 8).load(0)


def test_a_failed_run_shows_its_own_error_not_the_manifests(tmp_path, caplog):
    """A run that fails (a full disk, a read-only folder) ends by compacting the manifest, which then fails the same
    way; that second error used to replace the first, so the user read about a temporary ``.json`` file instead of
    what went wrong (found by an audit). ``compacting`` raises the block's error and logs the other."""
    project = MovieProject(str(tmp_path), "failing")
    project.set_script("hash", "Failing")
    manifest = Path(project.manifest_path)
    manifest.mkdir()  # manifest.json cannot be replaced: compact fails
    (manifest / "x").write_text("x")
    with pytest.raises(ValueError, match="^the first error$"):
        with project.compacting():
            raise ValueError("the first error")
    assert "could not be compacted" in caplog.text
    with pytest.raises(OSError):  # no error of the block: compact's own is raised
        with project.compacting():
            pass


@pytest.mark.parametrize("code, words", [(28, "the disk is full"), (13, "is not writable by this process")])
def test_a_write_that_fails_names_the_file_it_was_writing_and_what_to_do(tmp_path, code, words):
    """The system names the temporary file beside the target (``.tmp_n16r7zip.safetensors``); the error says which
    file was being written and what to do, keeping its kind (``PermissionError`` stays one)."""
    from moviedreamer_core.files import atomic_path

    target = tmp_path / "keyframes" / "keyframe_00003.png"
    with pytest.raises(OSError) as failed:
        with atomic_path(str(target)) as tmp:
            raise OSError(code, os.strerror(code), tmp)
    assert failed.value.errno == code and str(target) in str(failed.value) and words in str(failed.value)
    assert ".tmp" not in str(failed.value) and not list(target.parent.iterdir()), "no temporary file is left"
    assert isinstance(failed.value, PermissionError) == (code == 13)
    with pytest.raises(OSError) as other:  # an error about another file is the block's own: left as it is
        with atomic_path(str(target)):
            raise OSError(13, "Permission denied", str(tmp_path.parent / "elsewhere.png"))
    assert "elsewhere.png" in str(other.value) and "not writable" not in str(other.value)


def test_a_new_project_on_read_only_storage_is_named_with_what_to_do(tmp_path, monkeypatch):
    """A new project on read-only storage said only "[Errno 30] Read-only file system: '.../brand_new'" (an audit; the
    read-only file system is simulated: the tests run as root, whom permissions do not stop)."""
    import errno

    real = os.makedirs

    def read_only(path, *args, **kwargs):
        if "brand_new" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "moviedreamer" / "brand_new"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    with pytest.raises(OSError) as refused:
        MovieProject(str(tmp_path), "brand_new")
    assert "brand_new" in str(refused.value) and "is not writable by this process" in str(refused.value)
    assert "queue again" in str(refused.value)


def test_opening_and_compacting_a_finished_project_writes_nothing(tmp_path):
    """A finished project is read, not rewritten, so it can sit on read-only storage and still be queued."""
    project = MovieProject(str(tmp_path), "finished", exclusive=True)
    with project.compacting():
        project.set_script("hash", "Finished")
    folder = Path(project.root)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    again = MovieProject(str(tmp_path), "finished", exclusive=True)
    with again.compacting():  # a run: its lock file is opened, not written
        again.set_script("hash", "Finished")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps


# ------------------------------------------------------------------------------------ one process at a time


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from moviedreamer_core.project import MovieProject
    project = MovieProject(sys.argv[2], "shared", exclusive=True)
    with project.compacting():
        project.record_keyframe(0, "sig0", {"shot": "s0"})
        print("holding", flush=True)
        time.sleep(float(sys.argv[3]))
        project.record_keyframe(1, "sig1", {"shot": "s1"})
    print("released", flush=True)
    time.sleep(60)
""")


def _holder(tmp_path, seconds):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(tmp_path), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "holding"
    return child


def test_a_second_process_run_of_a_project_waits_for_the_first_and_reads_what_it_finished(tmp_path):
    """Two servers on one output folder: the second run of the same project waits until the first has finished its
    node (not merely opened the project), then sees both of the first's keyframes rather than doing them again."""
    child = _holder(tmp_path, 2.0)
    try:
        messages = []
        started = time.monotonic()
        project = MovieProject(str(tmp_path), "shared", exclusive=True, wait=messages.append)
        with project.compacting():
            waited = time.monotonic() - started
            assert project.keyframe_entry_signature(1) == "sig1", "the first run's last update is read"
        assert waited > 1.0 and project.waited > 1.0, waited
        assert messages and "in use by another process" in messages[0] and str(Path(project.root)) in messages[0]
        assert "waited" in project.waited_note()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_wait_for_a_project_can_be_cancelled_and_a_killed_holder_leaves_no_lock(tmp_path):
    child = _holder(tmp_path, 120)
    try:
        class Cancelled(Exception):
            pass

        calls = []

        def cancel(message):
            calls.append(message)
            if len(calls) == 3:
                raise Cancelled

        with pytest.raises(Cancelled):
            MovieProject(str(tmp_path), "shared", exclusive=True, wait=cancel)
        assert len(calls) == 3
    finally:
        child.kill()  # kill -9 inside its run: the kernel lets go of the lock
        child.wait()
        child.stdout.close()
    started = time.monotonic()
    project = MovieProject(str(tmp_path), "shared", exclusive=True, wait=lambda m: pytest.fail(m))
    assert time.monotonic() - started < 5 and project.waited == 0
    assert project.keyframe_entry_signature(0) == "sig0" and project.keyframe_entry_signature(1) is None
    project.close()


def test_openings_of_one_process_and_readers_never_wait(tmp_path):
    """A process does not wait for itself (a node opening a project it holds), openings that only read and the
    participants of a distributed run (writer names) take no lock."""
    first = MovieProject(str(tmp_path), "own", exclusive=True, wait=lambda m: pytest.fail(m))
    second = MovieProject(str(tmp_path), "own", exclusive=True, wait=lambda m: pytest.fail(m))
    second.close()
    child = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from moviedreamer_core.project import MovieProject
        MovieProject(sys.argv[2], "own")  # reads
        w = MovieProject(sys.argv[2], "own", writer="worker1", exclusive=True)  # a participant: no lock
        w.record_keyframe(3, "w3", {})
        print("done")
    """), str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert child.stdout.strip() == "done", child.stderr
    first.close()
    first.close()  # idempotent


def test_a_filesystem_that_refuses_the_lock_leaves_the_project_unlocked_not_broken(tmp_path, monkeypatch, caplog):
    """NFS and SMB emulate flock with byte-range locks, which refuse some descriptors (EBADF) or have none (ENOLCK):
    every node that writes a project failed there with "[Errno 9] Bad file descriptor" (a review). It goes on without
    the lock, and says so."""
    import errno
    import logging

    from moviedreamer_core import project_lock

    real_flock = project_lock.fcntl.flock

    def refused(fd, operation):  # the project's lock file only: temporary files are opened for writing, and lock
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/.lock"):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_flock(fd, operation)

    monkeypatch.setattr(project_lock.fcntl, "flock", refused)
    with caplog.at_level(logging.WARNING, logger="moviedreamer_core.project_lock"):
        project = MovieProject(str(tmp_path), "nfs", exclusive=True, wait=lambda m: pytest.fail(m))
    with project.compacting():
        project.record_keyframe(0, "sig0", {})
    assert MovieProject(str(tmp_path), "nfs").keyframe_entry_signature(0) == "sig0"
    assert "cannot be locked here" in caplog.text
