"""The animatic: each keyframe held for its shot's duration with a slow camera move, and the script's
transitions. Costs nothing but encoding, so it is the whole-movie preview before hours of image-to-video
sampling, and the backend ShotAnimate uses when no video model is connected.

Camera moves follow the script's ``camera`` field: wide shots push in slowly, close-ups pull back a little,
medium shots pan. A shot with several keyframes cross-fades from one to the next. Transitions: ``fade`` and
``fade_to_black`` fade in from black, ``dissolve`` (and ``wipe``) blend from the previous shot's last frame;
``cut`` is a cut. Frames are produced one at a time (a generator): a shot never sits in memory whole.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
from PIL import Image

#: Zoom at the end of a shot relative to the start, per camera (>1 pushes in, <1 pulls back).
ZOOM = {"extreme_wide": 1.12, "wide": 1.10, "full": 1.08, "aerial": 1.10, "medium": 1.0, "over_the_shoulder": 1.04,
        "point_of_view": 1.06, "medium_close_up": 0.96, "close_up": 0.94, "extreme_close_up": 0.95}
#: Horizontal pan over the shot, as a fraction of the width, for cameras that do not zoom.
PAN = 0.06
TRANSITION_FRAMES_S = 0.5  # seconds a transition lasts


def _crop_fraction(camera: str, t: float) -> float:
    """Share of the keyframe's width/height in view at time ``t``: 1 is the whole keyframe."""
    z = ZOOM.get(camera, 1.0)
    if z > 1.0:  # push in: from the whole frame to 1/z of it
        return 1.0 / (1.0 + (z - 1.0) * t)
    if z < 1.0:  # pull back: from z of the frame to all of it
        return z + (1.0 - z) * t
    return 1.0 / (1.0 + PAN)  # pan: a slightly narrower window that travels sideways


def _frame(image: Image.Image, t: float, camera: str, size: tuple[int, int]) -> np.ndarray:
    """One frame at time ``t`` in [0, 1] of the camera move, rendered at ``size`` (width, height)."""
    w, h = image.size
    c = _crop_fraction(camera, t)
    crop_w, crop_h = w * c, h * c
    cx = w / 2 + (PAN * w * (t - 0.5) if ZOOM.get(camera, 1.0) == 1.0 else 0.0)
    left = min(max(cx - crop_w / 2, 0.0), w - crop_w)
    top = (h - crop_h) / 2
    return np.asarray(image.resize(size, Image.BICUBIC, box=(left, top, left + crop_w, top + crop_h)))


def shot_frames(keyframes: list[np.ndarray], n_frames: int, fps: float, camera: str, transition: str,
                size: tuple[int, int], previous_last: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` ``uint8 [H, W, 3]`` frames for one shot from its keyframe images."""
    images = [Image.fromarray(k) for k in keyframes]
    n_trans = min(n_frames, max(1, int(round(TRANSITION_FRAMES_S * fps))))
    for f in range(n_frames):
        t = f / max(n_frames - 1, 1)
        pos = t * (len(images) - 1)
        a = int(np.floor(pos))
        b = min(a + 1, len(images) - 1)
        frame = _frame(images[a], t, camera, size).astype(np.float32)
        if b != a:
            w = pos - a
            frame = (1 - w) * frame + w * _frame(images[b], t, camera, size).astype(np.float32)
        if f < n_trans and transition != "cut":
            alpha = (f + 1) / (n_trans + 1)
            if transition in ("fade", "fade_to_black") or previous_last is None:
                frame = frame * alpha
            else:
                frame = alpha * frame + (1 - alpha) * previous_last.astype(np.float32)
        yield np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def animatic_backend(fps: float, size: tuple[int, int]):
    """The animatic as a ``make_movie`` backend."""

    def backend(timing, shot, keyframes, previous_last):
        transition = shot.transition.value if timing.shot_index else "cut"
        return shot_frames(keyframes, timing.frames, fps, shot.camera.value, transition, size, previous_last)

    return backend
