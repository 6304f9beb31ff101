"""Shot boundaries with PySceneDetect's ``ContentDetector`` (HSV + edge change between frames).

MovieDreamer's planner sees a film as a sequence of keyframes, a few per shot (arXiv 2407.16655, section
3.3 plans keyframes shot by shot); shots come from a content-change detector, the usual choice for films.
We feed ``ContentDetector`` the frames we decode ourselves (``video.scan``), one at a time, so detection
shares the single scan pass with keyframe sharpness. The minimum shot length is in seconds (converted with
the video's frame rate) and enforced in ``SUPPRESS`` mode, which reports each cut as soon as it is seen.
"""

from __future__ import annotations

import numpy as np


class ShotDetector:
    """Feed frames in order with ``push``; ``shots(n_frames)`` gives ``[(start, end), ...]`` (end exclusive)."""

    def __init__(self, fps: float, threshold: float = 27.0, min_shot_seconds: float = 0.5):
        from scenedetect.detectors import ContentDetector
        from scenedetect.detector import FlashFilter

        self.fps = float(fps)
        min_len = max(1, int(round(min_shot_seconds * self.fps)))
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_len, filter_mode=FlashFilter.Mode.SUPPRESS)
        self._cuts: list[int] = []

    def push(self, index: int, bgr: np.ndarray) -> None:
        from scenedetect import FrameTimecode

        for tc in self._detector.process_frame(FrameTimecode(int(index), fps=self.fps), bgr):
            self._cuts.append(int(tc.frame_num))

    def shots(self, n_frames: int) -> list[tuple[int, int]]:
        bounds = [0] + sorted(c for c in set(self._cuts) if 0 < c < n_frames) + [n_frames]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
