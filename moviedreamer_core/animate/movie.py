"""Making the movie: every shot to its own video file as soon as it is done, then the assembled movie.

Memory is bounded by design (a ten-minute movie must not need ten minutes of frames in RAM): frames stream from the backend into the encoder and only
a small preview (one downsized frame per second, at most ``PREVIEW_MAX``) is kept, so a ten-minute movie needs no more memory than
a ten-second one. Each finished shot is recorded in the project manifest with a signature of everything
that determines it; a rerun skips shots whose file is whole and whose signature matches, so an interrupted
run loses at most the shot in progress, and a truncated file is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from ..files import file_sha256
from ..project import MovieProject
from ..script.hashing import script_hash
from ..script.schema import Script
from ..video_io import concat_videos, iter_frames, video_info, write_video
from .timing import plan_shots

#: Transitions whose shot starts from the previous shot's last frame (the animatic blends from it for ``dissolve``,
#: ``wipe`` and ``continuous`` alike), so the previous shot's signature enters theirs: a changed shot is made again
#: with the shot that blends from it. The same transitions join shots into chains in a distributed run
#: (``distribution.split.JOINING``).
FROM_PREVIOUS = frozenset({"dissolve", "wipe", "continuous"})

#: ``backend(shot_timing, shot, keyframe_images, previous_last_frame) -> iterator of uint8 frames``; a backend
#: that can land a shot on a given last frame (``lands_on_next=True``) also takes ``next_keyframe=`` (or None).
Backend = Callable[..., Iterator[np.ndarray]]
PREVIEW_SIDE = 256


@dataclass
class MovieResult:
    """``MD_MOVIE``: where the movie is and what was made this time."""

    root: str
    movie_file: str
    shot_files: list
    rendered: list  # shot indices made in this run (the others were reused)
    frames: int
    fps: float
    preview: list = field(default_factory=list)  # small uint8 frames, about one per second (at most PREVIEW_MAX)
    stale: list = field(default_factory=list)  # files of shots the script no longer has, moved into stale/ this run


#: The preview strip holds at most this many frames: one per second until it is full, then every 2nd, 4th...
PREVIEW_MAX = 64


class PreviewStrip:
    """Small frames spread over the whole movie in bounded memory: a frame every ``stride`` frames; when the
    strip is full, every other frame is dropped and the stride doubles (so a ten-minute movie's preview is no
    larger than a one-minute movie's)."""

    def __init__(self, stride: int, limit: int = PREVIEW_MAX):
        self.stride, self.limit, self.count, self.frames = max(1, int(stride)), int(limit), 0, []
        self.next = 0  # the frame index of the next sample

    def _take(self, small: np.ndarray) -> None:
        self.frames.append(small)
        self.next += self.stride
        if len(self.frames) > self.limit:
            self.frames = self.frames[::2]
            self.stride *= 2

    def add_sampled(self, smalls: list, every: int, n_frames: int) -> None:
        """A shot whose small frames were kept (frames 0, every, 2*every... of its ``n_frames``)."""
        for j, small in enumerate(smalls):
            if self.count + j * every >= self.next:
                self._take(small)
        self.count += n_frames


def _small(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = PREVIEW_SIDE / max(h, w)
    if scale >= 1:
        return frame.copy()
    return np.asarray(Image.fromarray(frame).resize((max(2, int(w * scale)), max(2, int(h * scale))), Image.BILINEAR))


def blank_preview_frame(size: tuple[int, int]) -> np.ndarray:
    """A black preview frame of a ``(width, height)`` movie, the size every preview frame of it has."""
    return _small(np.zeros((size[1], size[0], 3), np.uint8))


def _last_frame(path: str) -> Optional[np.ndarray]:
    """The last frame of a shot file as it decodes (``None`` when it does not)."""
    last = None
    try:
        for last in iter_frames(path):
            pass
    except Exception:  # av raises many error types for damaged files
        return None
    return last


def _decode_for_preview(path: str, every: int) -> Optional[tuple[list, np.ndarray, int]]:
    """One decoding pass over a shot file: its small frames 0, every, 2*every..., its last frame and its frame
    count; ``None`` when the file is missing, truncated or unreadable."""
    smalls, last, n = [], None, 0
    try:
        for n, last in enumerate(iter_frames(path), start=1):
            if (n - 1) % every == 0:
                smalls.append(_small(last))
    except Exception:  # av raises many error types for damaged files
        return None
    return (smalls, last, n) if n else None


def _signature(parts: dict, keyframes: list) -> str:
    """Everything that determines a shot's frames; a shot that blends from the previous one includes the
    previous shot's signature (which determines that shot's frames)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for k in keyframes:
        h.update(str(k.shape).encode())
        h.update(np.ascontiguousarray(k).tobytes())
    return h.hexdigest()


def make_movie(project: MovieProject, script: Script, keyframe: Callable[[int], np.ndarray], *, fps: float,
               frames_per_clip: int, size: tuple[int, int], backend: Backend, backend_name: str,
               backend_params: Optional[dict] = None, progress: Optional[Callable[[int, int], None]] = None,
               check_interrupt: Optional[Callable[[], None]] = None, lands_on_next: bool = False,
               only_shots: Optional[Sequence[int]] = None) -> MovieResult:
    """Make (or resume) every shot, then assemble the movie. ``keyframe(i)`` returns keyframe i as
    ``uint8 [H, W, 3]`` (loaded on demand, so keyframes need not all be in memory either).

    ``lands_on_next``: the backend can end a shot on a given frame. Then a shot followed by one whose
    transition is ``continuous`` is made to land on that shot's first keyframe (which enters its signature).

    ``only_shots``: a participant's share of a distributed run (``distribution.split``: whole chains of shots, so
    every shot that blends from the previous one finds it here). Only those shots are made; nothing is moved aside
    and no movie is assembled (the master's gathering step does both). Their signatures are the ones a run on one
    instance computes, so either kind of run resumes the other's shots."""
    fps = float(fps)
    # a digest of the video model files (ShotAnimate's backend_params["models"]) in each new shot's entry: Gather
    # Movie refuses a distributed run whose participants animated with different ones (they were mixed: an audit)
    video_models = (backend_params or {}).get("models")
    models = _signature({"models": video_models}, []) if video_models else None
    project.set_script(script_hash(script), script.title)
    timings = plan_shots(script, fps, frames_per_clip)
    share = None if only_shots is None else set(only_shots)
    stale = [] if share is not None else project.retire_shots(
        {t.shot_index: project.shot_file(t.shot_index, t.shot_id) for t in timings})
    every = max(1, int(round(fps)))
    preview = PreviewStrip(every)
    files, rendered = [], []
    previous_last: Optional[np.ndarray] = None  # the previous shot's last frame *as decoded from its file*
    previous_file: Optional[str] = None  # ... or the file to decode it from, when a shot that follows needs it
    previous_sig = ""
    for timing in timings:
        if share is not None and timing.shot_index not in share:
            previous_last, previous_file, previous_sig = None, None, ""
            continue
        shot = script.shots[timing.shot_index]
        images = [keyframe(k) for k in timing.keyframes]
        transition = shot.transition.value if timing.shot_index else "cut"
        needs_previous = transition in FROM_PREVIOUS
        following = script.shots[timing.shot_index + 1] if timing.shot_index + 1 < len(script.shots) else None
        landing = None
        if lands_on_next and following is not None and following.transition.value == "continuous":
            landing = keyframe(timing.keyframes[-1] + 1)
        sig = _signature({"backend": backend_name, "params": backend_params or {}, "fps": fps, "size": list(size),
                          "frames": timing.frames, "camera": shot.camera.value, "transition": transition,
                          "clips": frames_per_clip, "previous": previous_sig if needs_previous else ""},
                         images + ([landing] if landing is not None else []))
        extra = {"next_keyframe": landing} if lands_on_next else {}
        rel = project.shot_file(timing.shot_index, timing.shot_id)
        entry = project.shot_entry(timing.shot_index, sig)
        check = project.shot_check(timing.shot_index, sig)  # a replaced file (other bytes) is made again
        kept = project.shot_sidecar(timing.shot_index, sig) if check == "unchanged" else None
        # a whole file without its kept preview, or one of an earlier version touched since: one decoding pass checks
        # it is whole and gives its preview and last frame
        decoded = (_decode_for_preview(project.path(entry["file"]), every)
                   if check in ("unchanged", "unverified") and kept is None else None)
        if kept is not None:  # the file is as it was written: its kept preview frames, no decoding
            rel = entry["file"]
            preview.add_sampled(kept["preview"], every, timing.frames)
            previous_last, previous_file = None, project.path(rel)
            if "sha256" not in entry:  # recorded by an earlier version: its SHA-256 once, so the movie need not be
                project.record_shot(timing.shot_index, rel, sig,  # joined again on every rerun
                                    project.shot_info(entry))
        elif decoded is not None and decoded[2] == timing.frames:
            rel = entry["file"]
            smalls, previous_last, _ = decoded
            preview.add_sampled(project.save_shot_sidecar(timing.shot_index, sig, smalls), every, timing.frames)
            project.record_shot(timing.shot_index, rel, sig, project.shot_info(entry))
        else:
            if previous_last is None and previous_file is not None:
                previous_last = _last_frame(previous_file)
            last_before = previous_last

            def frames() -> Iterator[np.ndarray]:
                for frame in backend(timing, shot, images, last_before, **extra):
                    if check_interrupt is not None:
                        check_interrupt()
                    yield frame

            n = write_video(project.path(rel), frames(), fps)
            if n != timing.frames:
                raise RuntimeError(f"shot {timing.shot_id}: the {backend_name} backend made {n} frames, expected {timing.frames}")
            # the preview and the last frame as decoded from the file, exactly what a rerun will see
            smalls, previous_last, _ = _decode_for_preview(project.path(rel), every)
            preview.add_sampled(project.save_shot_sidecar(timing.shot_index, sig, smalls), every, n)
            project.record_shot(timing.shot_index, rel, sig, {"shot": timing.shot_id, "frames": n, "backend": backend_name,
                                                              **({"models": models} if models else {})})
            rendered.append(timing.shot_index)
        previous_sig = sig
        files.append(rel)
        if progress is not None:
            progress(len(files) if share is not None else timing.shot_index + 1,
                     len(share) if share is not None else len(timings))
    if share is not None:
        return MovieResult(project.root, "", [project.path(f) for f in files], rendered, 0, fps, preview.frames, [])
    return assemble_movie(project, files, fps, backend_name, preview.frames, rendered, stale)


def assemble_movie(project: MovieProject, files: list, fps: float, backend_name: str, preview: list,
                   rendered: list, stale: list) -> MovieResult:
    """Join the shot files (relative names, in order) into the project's movie and record it. A movie already joined
    from these very shots (their recorded SHA-256s, in order) at this fps, its file as it was written, is kept as it
    is: a rerun with nothing new writes nothing (a finished project may sit on read-only storage)."""
    movie_rel = f"{project.name}.mp4"
    joined = _joined_from(project, files, fps)
    entry = project.manifest.get("movie")
    if not (joined is not None and isinstance(entry, dict) and entry.get("joined") == joined
            and entry.get("file") == movie_rel and project.file_check(("movie",), entry) == "unchanged"):
        concat_videos([project.path(f) for f in files], project.path(movie_rel))
        info = video_info(project.path(movie_rel))
        st = os.stat(project.path(movie_rel))
        entry = {"file": movie_rel, "frames": info["frames"] if info else 0, "fps": fps, "shots": files,
                 "backend": backend_name, "joined": joined, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "sha256": file_sha256(project.path(movie_rel))}
        project.set_movie(entry)
    project.compact()
    return MovieResult(project.root, project.path(movie_rel), [project.path(f) for f in files], rendered,
                       entry["frames"], fps, preview, stale)


def _joined_from(project: MovieProject, files: list, fps: float) -> Optional[str]:
    """What a movie joined from ``files`` holds: a digest of the fps and each shot's recorded SHA-256, or ``None``
    when a shot's entry has none (recorded by an earlier version)."""
    recorded = {e.get("file"): e.get("sha256") for e in project.manifest["shots"].values() if isinstance(e, dict)}
    hashes = [recorded.get(f) for f in files]
    if not hashes or not all(isinstance(h, str) for h in hashes):
        return None
    return hashlib.sha256(json.dumps([repr(float(fps)), hashes]).encode()).hexdigest()

