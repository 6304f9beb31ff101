"""Decoding a source video with PyAV, streamed: frames are never all held in memory.

Two passes keep memory flat for a feature film. ``scan`` decodes every frame once at a small size (longest
side at most ``scan_size``) and hands each to a callback (shot detection and sharpness need nothing more);
``grab`` decodes again and keeps only the requested frames, at full resolution. A file PyAV cannot open or
decode raises ``VideoReadError`` with the reason, so the builder can skip it and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

#: Extensions the builder picks up in the input folder.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")


class VideoReadError(RuntimeError):
    """The video could not be opened or decoded; the message says why."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    #: Each frame's presentation time in seconds from the first frame's (``None``: frame index / ``fps``). A video of
    #: variable frame rate shows frame 20 at 2.86 s where 20 / its average rate says 2.5 s, and captions with start and
    #: end times (``.srt`` subtitles, sidecar ``start``/``end``) landed on the wrong keyframe (an audit).
    times: Optional[tuple] = None

    def time(self, frame: int) -> float:
        """Seconds of frame ``frame`` (``frames`` for the end of the last one)."""
        if self.times and 0 <= frame < len(self.times):
            return self.times[frame]
        if self.times and frame >= len(self.times):
            return self.times[-1] + 1.0 / self.fps
        return frame / self.fps


def _scaled_size(width: int, height: int, longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def scan(path: str, on_frame: Callable[[int, np.ndarray], None], scan_size: int = 320) -> VideoInfo:
    """Decode every frame of ``path`` as a small ``uint8 [h, w, 3]`` BGR image (OpenCV's order, which
    PySceneDetect expects) and call ``on_frame(index, image)``; returns the stream's facts."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError("no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            n, size, full, times = 0, None, (0, 0), []
            for frame in container.decode(stream):
                if size is None:
                    full = (frame.width, frame.height)
                    size = _scaled_size(frame.width, frame.height, scan_size)
                times.append(frame.time)
                on_frame(n, frame.reformat(width=size[0], height=size[1], format="bgr24").to_ndarray())
                n += 1
    except VideoReadError:
        raise
    except Exception as e:  # PyAV raises many error types for damaged or foreign files
        raise VideoReadError(f"{type(e).__name__}: {e}") from e
    if n == 0:
        raise VideoReadError("no decodable frames")
    known = None
    if all(t is not None for t in times) and all(b >= a for a, b in zip(times, times[1:])):
        known = tuple(round(float(t) - float(times[0]), 6) for t in times)  # from the first frame; else index / fps
    return VideoInfo(frames=n, fps=fps, width=full[0], height=full[1], times=known)


def grab(path: str, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames with the given indices as full-resolution ``uint8 [H, W, 3]`` RGB, decoding up to the last."""
    import av

    wanted = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    last = max(wanted)
    try:
        with av.open(path) as container:
            for n, frame in enumerate(container.decode(video=0)):
                if n in wanted:
                    out[n] = frame.to_ndarray(format="rgb24")
                if n >= last:
                    break
    except Exception as e:
        raise VideoReadError(f"{type(e).__name__}: {e}") from e
    missing = wanted - set(out)
    if missing:
        raise VideoReadError(f"frames {sorted(missing)[:5]} could not be decoded on the second pass")
    return out
