"""Keyframes per shot: the sharpest frame near the middle of the shot, or K frames spread across it.

The paper represents each shot by keyframes that the planner predicts and the renderer draws (arXiv
2407.16655, section 3.1); a keyframe should show the shot's content clearly, so we take the frame with the
highest variance of the Laplacian (the usual focus/motion-blur measure) within the middle half of the shot,
or, for K keyframes, within the middle half of each of K equal parts of the shot. Middle, because the
first and last frames of a shot are the ones most often caught in a dissolve or a fast camera move.
"""

from __future__ import annotations

import numpy as np


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the image's luma (``uint8 [H, W, 3]`` or ``[H, W]``)."""
    g = image.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def pick_keyframes(shots: list[tuple[int, int]], sharpness: np.ndarray, per_shot: int = 1) -> list[tuple[int, int]]:
    """``[(shot_index, frame_index), ...]`` in time order: ``per_shot`` keyframes per shot (fewer when the
    shot has fewer frames), each the sharpest frame in the middle half of its part of the shot (ties: the
    frame nearest the part's middle)."""
    if per_shot < 1:
        raise ValueError(f"keyframes per shot must be at least 1, got {per_shot}")
    out = []
    for s, (start, end) in enumerate(shots):
        n = end - start
        k = min(per_shot, n)
        for j in range(k):
            a = start + (n * j) // k
            b = start + (n * (j + 1)) // k
            length = b - a
            lo = a + length // 4
            hi = max(lo + 1, b - length // 4)
            candidates = np.arange(lo, hi)
            mid = (a + b - 1) / 2.0
            scores = sharpness[candidates]
            best = max(zip(scores, -np.abs(candidates - mid), candidates))[2]
            out.append((s, int(best)))
    return out
