"""Shot animation without a host: timing and clip chaining, the animatic, streaming video files, resume,
truncated files, and flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from moviedreamer_core.animate import animatic_backend, animatic_frames, make_movie, plan_shots, split_into_clips
from moviedreamer_core.project import MovieProject
from moviedreamer_core.script import load_script
from moviedreamer_core.video_io import concat_videos, video_info, write_video

ROOT = Path(__file__).resolve().parents[2]


def script_text(n_shots: int) -> str:
    shots = "".join(
        f"  - id: s{i}\n    scene: place {i}\n    action: [a {i}, b {i}]\n    duration: {1 + (i % 3) * 0.5}\n"
        f"    camera: {['wide', 'medium', 'close_up'][i % 3]}\n    transition: {['cut', 'dissolve', 'fade'][i % 3]}\n"
        for i in range(n_shots))
    return f"title: Animatic Test\nshots:\n{shots}"


def keyframe_images(n: int, h: int = 48, w: int = 64) -> list:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# --------------------------------------------------------------------------------------------- timing


def test_clips_chain_from_the_last_frame():
    clips = split_into_clips(60, 25)
    assert [(c.first_frame, c.new_frames, c.length) for c in clips] == [(0, 25, 25), (25, 24, 25), (49, 11, 12)]
    assert sum(c.new_frames for c in clips) == 60
    assert [(c.new_frames, c.length) for c in split_into_clips(10, 25)] == [(10, 10)]
    with pytest.raises(ValueError):
        split_into_clips(10, 1)


def test_frames_per_shot_follow_durations():
    script = load_script(script_text(4))
    timings = plan_shots(script, fps=12, frames_per_clip=14)
    assert [t.frames for t in timings] == [12, 18, 24, 12]
    assert [t.keyframes for t in timings] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert timings[2].clips[1].first_frame == 14


# -------------------------------------------------------------------------------------------- animatic


def test_animatic_moves_the_camera_and_fades():
    kf = keyframe_images(2)
    frames = list(animatic_frames(kf, 12, 12, "wide", "fade", (64, 48)))
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert frames[0].mean() < frames[-1].mean() * 0.8, "fades in from black"
    assert not np.array_equal(frames[-2], frames[-1]), "the camera keeps moving"
    cut = list(animatic_frames(kf[:1], 6, 12, "medium", "cut", (64, 48)))
    assert abs(float(cut[0].mean()) - float(kf[0].mean())) < 10, "a cut starts on the keyframe itself"
    again = list(animatic_frames(kf, 12, 12, "wide", "fade", (64, 48)))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again)), "deterministic"


# ------------------------------------------------------------------------------------------- video I/O


def test_video_files_are_written_whole_and_joined_without_reencoding(tmp_path):
    kf = keyframe_images(1)
    assert write_video(str(tmp_path / "a.mp4"), animatic_frames(kf, 10, 12, "wide", "cut", (64, 48)), 12) == 10
    assert write_video(str(tmp_path / "b.mp4"), animatic_frames(kf, 7, 12, "close_up", "cut", (64, 48)), 12) == 7
    assert video_info(str(tmp_path / "a.mp4")) == {"frames": 10, "width": 64, "height": 48, "fps": 12.0}
    concat_videos([str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")], str(tmp_path / "movie.mp4"))
    assert video_info(str(tmp_path / "movie.mp4"))["frames"] == 17
    data = (tmp_path / "b.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    assert video_info(str(tmp_path / "cut.mp4")) is None
    assert video_info(str(tmp_path / "missing.mp4")) is None
    assert not list(tmp_path.glob(".tmp_*"))


def test_the_same_frames_always_make_the_same_file(tmp_path):
    """x264's AVX-512 code now and then encoded a shot to other bytes (decoded pixels up to 35 levels apart; about one
    encode in ten of a fading 64x48 shot, depending on what the process's memory held before): a shot made again
    differed from the first, and a rerun's movie from a fresh one's (``video_io.X264_WITHOUT_AVX512``). Ninety encodes
    of one such shot, three at a time, give one file. (On a CPU without AVX-512 this holds either way.)"""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    frames = list(animatic_frames(keyframe_images(2), 24, 12, "close_up", "fade", (64, 48)))

    def encode(i: int) -> str:
        write_video(str(tmp_path / f"shot{i}.mp4"), iter(frames), 12)
        return hashlib.sha256((tmp_path / f"shot{i}.mp4").read_bytes()).hexdigest()

    with ThreadPoolExecutor(3) as pool:
        assert len(set(pool.map(encode, range(90)))) == 1


@pytest.mark.parametrize("lengths", [(24, 1, 24), (1, 24), (2, 24), (24, 2, 3, 1, 24), (1, 1, 1), (5, 1)])
def test_shots_of_one_or_two_frames_join_the_movie_frame_for_frame(tmp_path, lengths):
    """H.264 files of a few frames have a shorter decoding delay than longer ones (their first packet's decoding time
    is not before its presentation time), so a long shot after a one-frame shot (a 0.1 s ``duration`` at 12 fps) had
    decoding times going back and the muxer refused the movie. Every shot's frames, decoded from its own file (the
    oracle), are the movie's frames in order, and the movie's frames follow each other one frame duration apart."""
    import av

    from moviedreamer_core.video_io import read_frames

    paths = []
    for i, n in enumerate(lengths):
        frames = [np.full((48, 64, 3), (37 * (i * 7 + k)) % 256, np.uint8) for k in range(n)]
        path = str(tmp_path / f"s{i}.mp4")
        assert write_video(path, frames, 12) == n
        paths.append(path)
    movie = str(tmp_path / "movie.mp4")
    concat_videos(paths, movie)
    expected = [f for p in paths for f in read_frames(p)]
    got = read_frames(movie)
    assert len(got) == sum(lengths) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    with av.open(movie) as container:
        stream = container.streams.video[0]
        pts = sorted(f.pts for f in container.decode(stream))
        step = round(1 / (12 * stream.time_base))
        duration, rate = stream.duration, stream.average_rate
    assert pts == [pts[0] + k * step for k in range(len(pts))], "no gap and no overlap between shots"
    assert duration == len(pts) * step and rate == 12, "the movie lasts its frames (players stop at its duration)"


# ------------------------------------------------------------------------------------ movie and resume


def run(tmp_path, n_shots=3, fps=12.0, interrupt_after=None):
    script = load_script(script_text(n_shots))
    kf = keyframe_images(script.n_keyframes)
    project = MovieProject(str(tmp_path), "animatic test")
    done = []

    def progress(i, total):
        done.append(i)
        if interrupt_after is not None and i == interrupt_after:
            raise KeyboardInterrupt("cancel")

    result = make_movie(project, script, lambda i: kf[i], fps=fps, frames_per_clip=25, size=(64, 48),
                        backend=animatic_backend(fps, (64, 48)), backend_name="animatic", progress=progress)
    return result, project


def test_movie_has_every_frame_and_a_small_preview(tmp_path):
    result, project = run(tmp_path)
    assert result.frames == 12 + 18 + 24
    info = video_info(result.movie_file)
    assert info == {"frames": 54, "width": 64, "height": 48, "fps": 12.0}
    assert len(result.shot_files) == 3 and result.rendered == [0, 1, 2]
    # about one small frame per second of 4.5 s, sampled per shot (frames 0 and 12 of each), 12 frames apart at least
    assert len(result.preview) == 4 and result.preview[0].shape == (48, 64, 3)
    manifest = json.loads(Path(project.manifest_path).read_text())
    assert manifest["movie"]["frames"] == 54 and manifest["shots"]["1"]["frames"] == 18


def test_interrupted_movie_resumes_with_only_the_missing_shot(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, interrupt_after=2)
    result, _ = run(tmp_path)
    assert result.rendered == [2], "shots 1 and 2 were kept"
    again, _ = run(tmp_path)
    assert again.rendered == []


def test_a_truncated_shot_file_is_made_again(tmp_path):
    first, project = run(tmp_path)
    path = Path(first.shot_files[1])
    path.write_bytes(path.read_bytes()[:500])
    result, _ = run(tmp_path)
    assert result.rendered == [1]
    assert video_info(str(path))["frames"] == 18


def test_a_changed_shot_is_made_again_with_the_shots_it_dissolves_into(tmp_path):
    run(tmp_path)
    changed = script_text(3).replace("duration: 1.0", "duration: 1.25")
    script = load_script(changed)
    kf = keyframe_images(script.n_keyframes)
    result = make_movie(MovieProject(str(tmp_path), "animatic test"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                        size=(64, 48), backend=animatic_backend(12, (64, 48)), backend_name="animatic")
    # shot 0 changed; shot 1 dissolves from it so it changes too; shot 2 fades in from black and is kept
    assert result.rendered == [0, 1]
    assert video_info(result.movie_file)["frames"] == 15 + 18 + 24


def test_a_continuous_shot_is_made_again_when_the_shot_it_blends_from_changes(tmp_path):
    """The animatic blends a ``continuous`` shot from the previous shot's last frame, as it does a dissolve; its
    signature left the previous shot out, so a changed shot 0 left shot 1 blending from the old last frame (found by
    an audit: a rerun's movie differed from a fresh project's in 24 of 60 frames)."""
    text = script_text(3).replace("transition: dissolve", "transition: continuous")  # shot 1 starts continuous

    def movie(text, name):
        script = load_script(text)
        kf = keyframe_images(script.n_keyframes)
        return make_movie(MovieProject(str(tmp_path), name), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                          size=(64, 48), backend=animatic_backend(12, (64, 48)), backend_name="animatic")

    assert movie(text, "continuous").rendered == [0, 1, 2]
    changed = text.replace("duration: 1.0", "duration: 1.25")
    rerun = movie(changed, "continuous")
    assert rerun.rendered == [0, 1], "shot 1 blends from the changed shot 0; shot 2 fades in from black and is kept"
    fresh = movie(changed, "fresh")
    assert [f for f in iter_all(rerun.movie_file)] == [f for f in iter_all(fresh.movie_file)]


def iter_all(path: str) -> list:
    from moviedreamer_core.video_io import iter_frames

    return [frame.tobytes() for frame in iter_frames(path)]


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_shots(tmp_path):
    """Peak RSS for 24 shots at most 1.2 times that for 3 shots (each run in its own process)."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.core.test_animate import run
        from pathlib import Path
        result, _ = run(Path(sys.argv[2]), n_shots=int(sys.argv[1]), fps=24.0)
        print(json.dumps({{"frames": result.frames, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
    """)
    out = {}
    for n in (3, 24):
        folder = tmp_path / f"n{n}"
        folder.mkdir()
        proc = subprocess.run([sys.executable, "-c", code, str(n), str(folder)], capture_output=True, text=True,
                              check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[24]["frames"] > 7 * out[3]["frames"]
    assert out[24]["rss"] <= 1.2 * out[3]["rss"], out


def test_a_shot_lands_on_the_next_keyframe_only_before_a_continuous_shot(tmp_path):
    """With a backend that can land (``lands_on_next``), the shot before a ``continuous`` one receives that
    shot's first keyframe, which enters its signature: a new keyframe there re-makes both shots."""
    text = script_text(3).replace("transition: dissolve", "transition: continuous")  # shot 1 starts continuous
    script = load_script(text)
    seen = {}

    def backend(timing, shot, keyframes, previous_last, next_keyframe=None):
        seen[timing.shot_index] = next_keyframe
        return iter([keyframes[0]] * timing.frames)

    def movie(kf):
        seen.clear()
        return make_movie(MovieProject(str(tmp_path), "landing"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                          size=(64, 48), backend=backend, backend_name="hold", lands_on_next=True)

    kf = keyframe_images(script.n_keyframes)
    assert movie(kf).rendered == [0, 1, 2]
    first_of_shot_1 = 2  # shot 0 has two keyframes (two action sentences)
    assert np.array_equal(seen[0], kf[first_of_shot_1]) and seen[1] is None and seen[2] is None
    changed = list(kf)
    changed[first_of_shot_1] = 255 - kf[first_of_shot_1]
    assert movie(changed).rendered == [0, 1], "shot 0 lands on the changed keyframe; shot 2 is kept"
    plain = make_movie(MovieProject(str(tmp_path), "not landing"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                       size=(64, 48), backend=lambda t, s, k, p: iter([k[0]] * t.frames), backend_name="hold")
    assert plain.rendered == [0, 1, 2], "a backend that cannot land is called as before"


def test_the_preview_strip_stays_bounded_and_spans_the_whole_movie():
    from moviedreamer_core.animate.movie import PREVIEW_MAX, PreviewStrip

    strip = PreviewStrip(stride=24)
    for shot in range(120):  # ten minutes at 24 fps: 120 shots of 5 s, one kept frame per second each
        strip.add_sampled([np.full((8, 8, 3), shot % 256, dtype=np.uint8)] * 5, 24, 120)
    assert PREVIEW_MAX // 2 <= len(strip.frames) <= PREVIEW_MAX
    assert strip.frames[0][0, 0, 0] == 0 and strip.frames[-1][0, 0, 0] >= 110, "from the first shot to the last"
    short = PreviewStrip(stride=24)
    for shot in range(2):
        short.add_sampled([np.zeros((8, 8, 3), np.uint8)] * 5, 24, 120)
    assert len(short.frames) == 10, "a short movie keeps one frame per second"


def test_a_rerun_trusts_untouched_shots_without_decoding_them(tmp_path, monkeypatch):
    """Untouched shot files (same size and modification time as recorded) come back with their kept preview
    frames and last frame, without decoding; a touched file is checked by decoding it and still reused."""
    from moviedreamer_core.animate import movie as movie_module

    first, project = run(tmp_path)

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    with monkeypatch.context() as m:
        m.setattr(movie_module, "iter_frames", no_decoding)
        again, _ = run(tmp_path)
    assert again.rendered == []
    assert len(again.preview) == len(first.preview)
    assert all(np.array_equal(a, b) for a, b in zip(again.preview, first.preview))
    os.utime(first.shot_files[1], ns=(1, 1))  # touched (a copy, a restored backup): the same bytes by SHA-256
    with monkeypatch.context() as m:
        m.setattr(movie_module, "iter_frames", no_decoding)
        touched, _ = run(tmp_path)
    assert touched.rendered == [] and video_info(touched.movie_file)["frames"] == first.frames
    entry = json.loads(Path(project.manifest_path).read_text())["shots"]["1"]
    assert entry["mtime_ns"] == 1, "the new time is recorded: the next rerun reads nothing"


def test_a_copied_project_and_one_of_an_earlier_version_settle_into_writing_nothing(tmp_path):
    """Found by a review audit. A project copied or restored (every file's time new) re-joined its movie on every
    rerun, and could not be queued from read-only storage: the movie is checked by its SHA-256 too, and the new
    times are recorded only where the folder can be written. A project of an earlier version (shots without a
    SHA-256) joined its movie on every rerun: each kept shot's SHA-256 is recorded once."""
    import shutil

    first, project = run(tmp_path / "a")
    folder = Path(project.root)
    copy = tmp_path / "b" / "moviedreamer" / folder.name
    shutil.copytree(folder, copy, copy_function=shutil.copy)  # new modification times, the same bytes
    (copy / "manifest.journal").symlink_to(copy / "nowhere" / "journal")  # cannot be written, as if read-only
    stamps = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    again, _ = run(tmp_path / "b")
    assert again.rendered == [] and again.frames == first.frames
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()} == stamps, "nothing written"
    (copy / "manifest.journal").unlink()
    run(tmp_path / "b")  # writable again: the new times are recorded ...
    stamps = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    run(tmp_path / "b")  # ... and the next rerun reads and writes nothing
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()} == stamps

    manifest = json.loads(Path(project.manifest_path).read_text())  # as an earlier version wrote it
    for entry in manifest["shots"].values():
        del entry["sha256"]
    del manifest["movie"]["joined"], manifest["movie"]["sha256"]
    Path(project.manifest_path).write_text(json.dumps(manifest))
    old, _ = run(tmp_path / "a")
    assert old.rendered == [] and all("sha256" in e for e in json.loads(Path(project.manifest_path).read_text())["shots"].values())
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    run(tmp_path / "a")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamps


def test_a_shot_file_replaced_by_another_of_the_same_length_is_made_again(tmp_path):
    """A shot's file swapped for another shot of the same frame count (a copy over it, a file from another project)
    was taken for the shot and joined into the movie: only the frame count was checked (found by an audit). The
    manifest keeps each shot's SHA-256, so other bytes are made again."""
    text = script_text(4).replace("duration: 2.0", "duration: 1.0").replace("duration: 1.5", "duration: 1.0")
    script = load_script(text)
    kf = keyframe_images(script.n_keyframes)

    def movie():
        return make_movie(MovieProject(str(tmp_path), "swap"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                          size=(64, 48), backend=animatic_backend(12, (64, 48)), backend_name="animatic")

    first = movie()
    frames_before = iter_all(first.movie_file)
    shots = [Path(f) for f in first.shot_files]
    assert video_info(str(shots[0]))["frames"] == video_info(str(shots[3]))["frames"] == 12
    shots[3].write_bytes(shots[0].read_bytes())
    again = movie()
    assert again.rendered == [3], "the replaced shot is made again, nothing else"
    assert iter_all(again.movie_file) == frames_before


def test_a_rerun_with_nothing_new_writes_nothing(tmp_path):
    """A finished project queued again (an empty project name runs the nodes on every queue) rewrites neither the
    manifest nor the movie, so a finished project on read-only storage can be queued (found by an audit: every
    rerun compacted the manifest and joined the movie again). A movie deleted, or one of its shots made again, is
    joined again."""
    first, project = run(tmp_path)
    folder = Path(project.root)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again, _ = run(tmp_path)
    assert again.rendered == [] and again.frames == first.frames
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamps
    Path(first.movie_file).unlink()
    rejoined, _ = run(tmp_path)
    assert video_info(rejoined.movie_file)["frames"] == first.frames
    Path(first.shot_files[2]).write_bytes(b"")
    remade, _ = run(tmp_path)
    assert remade.rendered == [2] and Path(remade.movie_file).stat().st_mtime_ns != stamps[Path(first.movie_file)]


# ------------------------------------------------------------------------------- the folder follows the script


def _shot_script(ids_and_durations) -> str:
    shots = "".join(f"  - id: {i}\n    scene: place {i}\n    action: a {i}\n    duration: {d}\n" for i, d in ids_and_durations)
    return f"title: Follows\nshots:\n{shots}"


def _make(tmp_path, text, kf):
    script = load_script(text)
    return make_movie(MovieProject(str(tmp_path), "follows"), script, lambda i: kf[i], fps=12, frames_per_clip=25,
                      size=(64, 48), backend=animatic_backend(12, (64, 48)), backend_name="animatic")


def _agree(project_root: Path, frames: int):
    """Manifest, files on disk and movie describe the same shots."""
    manifest = json.loads((project_root / "manifest.json").read_text())
    listed = sorted(e["file"] for e in manifest["shots"].values())
    on_disk = sorted(f"shots/{p.name}" for p in (project_root / "shots").glob("*.mp4"))
    assert listed == on_disk == sorted(manifest["movie"]["shots"]), (listed, on_disk, manifest["movie"]["shots"])
    assert sorted(p.name for p in (project_root / "shots").glob("*.preview.safetensors")) == \
        sorted(f"shot_{int(k):05d}.preview.safetensors" for k in manifest["shots"])
    assert video_info(str(project_root / "follows.mp4"))["frames"] == manifest["movie"]["frames"] == frames
    return manifest


def test_a_shorter_or_reordered_script_moves_what_it_no_longer_has_aside(tmp_path):
    kf = keyframe_images(4)
    first = _make(tmp_path, _shot_script([("a", 1), ("b", 1), ("c", 1), ("d", 1)]), kf)
    root = Path(first.root)
    _agree(root, 48)
    shorter = _make(tmp_path, _shot_script([("a", 1), ("b", 1)]), kf)
    assert shorter.rendered == [] and len(shorter.stale) == 5  # shots c and d with their sidecars, the old movie
    manifest = _agree(root, 24)
    assert sorted(manifest["shots"]) == ["0", "1"]
    stale = sorted(p.relative_to(root).as_posix().split("/", 2)[2] for p in (root / "stale").rglob("*") if p.is_file())
    assert stale == ["follows.mp4", "shots/shot_00002.preview.safetensors", "shots/shot_00002_c.mp4",
                     "shots/shot_00003.preview.safetensors", "shots/shot_00003_d.mp4"]
    # re-ordered: b first; both shots are made again under their new places, the old files go aside
    swapped = _make(tmp_path, _shot_script([("b", 1), ("a", 1)]), kf)
    assert swapped.rendered == [0, 1]
    manifest = _agree(root, 24)
    assert [manifest["shots"][k]["file"] for k in ("0", "1")] == ["shots/shot_00000_b.mp4", "shots/shot_00001_a.mp4"]
    # nothing stale left: a rerun moves nothing
    assert _make(tmp_path, _shot_script([("b", 1), ("a", 1)]), kf).stale == []


def test_keyframes_past_the_storyboards_end_leave_the_folder_and_the_manifest(tmp_path):
    project = MovieProject(str(tmp_path), "keys")
    for k, image in enumerate(keyframe_images(5)):
        project.save_keyframe(k, image, f"sig{k}", {"shot": "s"})
    moved = MovieProject(str(tmp_path), "keys").retire_keyframes(3)
    assert sorted(m.rsplit("/", 1)[1] for m in moved) == ["keyframe_00003.png", "keyframe_00004.png"]
    again = MovieProject(str(tmp_path), "keys")
    assert sorted(again.manifest["keyframes"]) == ["0", "1", "2"]
    assert sorted(p.name for p in (Path(again.root) / "keyframes").iterdir()) == [f"keyframe_0000{i}.png" for i in range(3)]
    assert again.keyframe_done(2, "sig2") and again.retire_keyframes(3) == []
