"""Where a keyframe is, read without a learned model: the nearest ground-truth background (issue #21).

The label probe reads a keyframe's place from the colours and textures it learnt on ground-truth keyframes, so a
decoded keyframe with a colour cast can read as another place although a viewer would not hesitate: the shipped
decoder draws some city squares at night with a teal cast, which the probe reads as the forest (from true tokens of
the 16 development films the probe read 0.845 of places right; 47 of its 64 errors were at the right place by the
match below). As a second opinion that no training can bias, the pixels outside the figures' boxes (at the script's
camera and the plan's pan) are compared with the ground-truth background of every place under every light, and
the nearest one (mean squared difference) is the reading. It reads 1.00 of places on ground-truth keyframes
(``tests/core/test_toycinema_background_match.py``). It is not a viewer either: it knows where the plan puts the
figures and the camera, and a keyframe of the right place drawn in the wrong light can sit nearer to another place.

``empty_framing`` reads a keyframe that should show nobody without being told its camera: the nearest empty
ground-truth background over places, lights, cameras and pans. The probe cannot do this: it learnt the camera from
the figures' size, and reads every empty ground-truth keyframe as a wide shot (54 of 54 at every camera), so a
closer empty shot drawn wide looked right to it. The decoder drew empty medium shots and close-ups wide even from
their true tokens until its tuning phase showed it some (``cli/toycinema_train.py``, ``TUNE_EMPTY_AFTER_LEAVE``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from .film import KeyframePlan
from .grammar import PAN
from .render import figure_boxes, render_keyframe
from .world import CAMERAS, N_CAMERAS, N_LOCATIONS, N_PLACE_LOOKS

#: Pans of the empty backgrounds ``empty_framing`` compares with, as shares of the camera's width: the grammar's pans
#: lie within +-``grammar.PAN`` of it.
FRAMING_PANS = (-PAN, -PAN / 2, 0.0, PAN / 2, PAN)


def background_reading(image: np.ndarray, plan: KeyframePlan) -> tuple[int, int]:
    """``(location, look)`` of the ground-truth background nearest to ``image`` (``uint8 [S, S, 3]``) outside the
    figures' boxes of ``plan`` (all pixels when the boxes cover the frame)."""
    size = int(image.shape[0])
    mask = ~figure_boxes(plan, size)
    if not mask.any():
        mask[:] = True
    pixels = np.asarray(image, np.float32)[mask]
    d = ((_backgrounds(plan.camera, plan.pan, size)[:, mask].astype(np.float32) - pixels) ** 2).sum(-1).mean(-1)
    return divmod(int(d.argmin()), N_PLACE_LOOKS)  # the first of equals, as the scan of places then lights


@lru_cache(maxsize=1024)
def _backgrounds(camera: int, pan: float, size: int) -> np.ndarray:
    """``uint8 [places * lights, size, size, 3]``: every place under every light, empty, through one camera window.
    Cached (55 KB each at 32 px): the benchmark reads the same keyframes' plans for every row it scores."""
    return np.stack([render_keyframe(KeyframePlan(location, camera, (), pan, look), size)
                     for location in range(N_LOCATIONS) for look in range(N_PLACE_LOOKS)])


#: The largest mean squared difference (0-255 levels) from the nearest empty ground-truth background at which a picture
#: is taken to show nobody (``nearest_empty``): decoded keyframes that should show nobody lie at 77-374 (the 19 of the
#: test films, from their true tokens), keyframes with figures in medium shots from 659, in close-ups from 1808 (a
#: figure covers much of the frame in colours no background has); wide shots from 195, but there the nearest empty
#: background is the wide one anyway.
EMPTY_DISTANCE = 500.0


def empty_framing(image: np.ndarray) -> tuple[int, int]:
    """``(camera, location)`` of the empty ground-truth background nearest to ``image`` (``uint8 [S, S, 3]``, all its
    pixels; mean squared difference) over every camera, place, light and pan (``FRAMING_PANS``): where and how close a
    keyframe that should show nobody was drawn, read without a learned model and without being told the camera."""
    return nearest_empty(image)[:2]


def nearest_empty(image: np.ndarray) -> tuple[int, int, float]:
    """``empty_framing`` and the mean squared difference to that background: a picture further than
    ``EMPTY_DISTANCE`` from every empty background shows something more than a place."""
    bank = _framing_bank(int(image.shape[0]))
    d = ((bank - np.asarray(image, np.float32)) ** 2).reshape(len(bank), -1).mean(-1)
    camera, rest = divmod(int(d.argmin()), len(FRAMING_PANS) * N_LOCATIONS * N_PLACE_LOOKS)
    return camera, rest % (N_LOCATIONS * N_PLACE_LOOKS) // N_PLACE_LOOKS, float(d.min())


@lru_cache(maxsize=4)
def _framing_bank(size: int) -> np.ndarray:
    """``float32 [cameras * pans * places * lights, size, size, 3]``: every empty background ``empty_framing`` reads,
    ``_backgrounds`` of every camera and pan (kept as floats: each reading compares with all of them)."""
    return np.concatenate([_backgrounds(camera, pan * CAMERAS[camera].width, size)
                           for camera in range(N_CAMERAS) for pan in FRAMING_PANS]).astype(np.float32)


def background_scores(images: Sequence[np.ndarray], plans: Sequence[KeyframePlan]) -> dict:
    """``location_background`` and ``look_background``: shares of keyframes whose nearest ground-truth background is
    the plan's place (and light)."""
    if len(images) != len(plans):
        raise ValueError(f"{len(images)} images for {len(plans)} keyframe plans")
    if not plans:
        return {"location_background": float("nan"), "look_background": float("nan")}
    readings = [background_reading(np.asarray(im), plan) for im, plan in zip(images, plans)]
    return {"location_background": float(np.mean([r[0] == p.location for r, p in zip(readings, plans)])),
            "look_background": float(np.mean([r[1] == p.look for r, p in zip(readings, plans)]))}
