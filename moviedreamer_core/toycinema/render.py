"""Drawing the toy world: a keyframe plan or a reference portrait to a ``uint8 [size, size, 3]`` image.

The world is a continuous scene evaluated at sample points (``world.py`` explains its coordinates). A camera
is a square window onto it; each output pixel averages ``ss x ss`` samples (supersampling), so 32x32 and
64x64 renders of the same plan agree and thin textures do not alias badly. Rendering is a pure function of
its inputs: no random numbers, only an integer hash for texture placement, so the bytes are the same on
every run and every machine.
"""

from __future__ import annotations

import numpy as np

from .film import KeyframePlan
from .world import CAMERAS, CHARACTERS, FEET_Y, HATS, LOCATIONS, NEUTRAL, PLACE_LOOKS, POSITION_U, Location, Look, PlaceLook

#: Samples per pixel along each axis.
SUPERSAMPLE = 4

#: A figure's extent around its feet ``(cx, feet)``, in world units: every sample ``draw_figure`` may paint.
FIGURE_HALF_WIDTH = 0.06
FIGURE_TOP = 0.32  # above the feet (the top of the hat; the head's top is at 0.267)
#: The hat's extent: from its top (``FIGURE_TOP`` above the feet) down to its brim, and its half width (the brim).
HAT_BOTTOM = 0.25
HAT_HALF_WIDTH = 0.058

_LEGS = (40, 40, 40)
_EYES = (20, 20, 20)
_MOUTH = (120, 30, 30)


def _hash01(i: np.ndarray, j: np.ndarray, salt: int = 0) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per integer cell ``(i, j)`` (integer arithmetic only)."""
    m = np.uint64(0xFFFFFFFF)
    h = (i.astype(np.int64).astype(np.uint64) * np.uint64(374761393)
         + j.astype(np.int64).astype(np.uint64) * np.uint64(668265263)
         + np.uint64(salt * 2654435761 % 2**32)) & m
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) & m
    h = h ^ (h >> np.uint64(16))
    return h.astype(np.float64) / 2.0**32


def _dots(X: np.ndarray, Y: np.ndarray, cell: float, density: float, radius: float, salt: int) -> np.ndarray:
    """Mask of round dots scattered on a grid of ``cell``-sized cells (a fraction ``density`` of them)."""
    i, j = np.floor(X / cell), np.floor(Y / cell)
    keep = _hash01(i, j, salt) < density
    ox = 0.2 + 0.6 * _hash01(i, j, salt + 1)
    oy = 0.2 + 0.6 * _hash01(i, j, salt + 2)
    d2 = (X / cell - i - ox) ** 2 + (Y / cell - j - oy) ** 2
    return keep & (d2 < (radius / cell) ** 2)


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def draw_background(loc: Location, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Sky, ground and the location's texture at sample points ``X, Y`` (2-D arrays); float RGB ``[..., 3]``."""
    h = loc.horizon
    sky = np.asarray(loc.sky, np.float32)
    lift = np.clip(1.0 - (h - Y) / 0.3, 0.0, 1.0)[..., None] * 0.25  # the sky pales towards the horizon
    img = sky + (255.0 - sky) * lift
    ground = Y >= h
    img[ground] = loc.ground
    tex = np.asarray(loc.texture_colour, np.float32)
    below = Y - h
    if loc.texture == "waves":
        img[ground & (_frac(below * 12.0 + 0.25 * np.sin(X * 25.0)) < 0.2)] = tex
    elif loc.texture == "trees":
        cell = np.floor(X / 0.08)
        height = 0.10 + 0.10 * _hash01(cell, np.zeros_like(cell), 7)
        top = h - height
        half = 0.5 * np.clip((Y - top) / height, 0.0, 1.0)
        img[(Y < h) & (Y > top) & (np.abs(_frac(X / 0.08) - 0.5) < half)] = tex
    elif loc.texture == "dunes":
        img[ground & (_frac(below * 8.0 + 0.3 * np.sin(X * 12.0)) < 0.35)] = tex
    elif loc.texture == "stars_bricks":
        img[~ground & _dots(X, Y, 0.05, 0.35, 0.007, 3)] = tex
        row = np.floor(below / 0.05)
        mortar = (_frac(below / 0.05) < 0.14) | (_frac(X / 0.1 + 0.5 * row) < 0.07)
        img[ground & mortar] = np.asarray(loc.ground, np.float32) * 0.65
    elif loc.texture == "snow":
        img[_dots(X, Y, 0.06, 0.5, 0.008, 5)] = tex
    elif loc.texture == "flowers":
        img[ground & _dots(X, Y, 0.05, 0.45, 0.01, 11)] = tex
    else:
        raise ValueError(f"unknown texture {loc.texture!r}")
    return img


#: ITU-R BT.601 luma weights: the grey a colour desaturates towards.
_LUMA = (0.299, 0.587, 0.114)


def apply_look(img: np.ndarray, look: PlaceLook) -> np.ndarray:
    """A background in a place's per-film light (``world.PlaceLook``): every colour desaturated, scaled and shifted,
    in place."""
    if look.saturation != 1.0:
        grey = img @ np.asarray(_LUMA, np.float32)
        img -= grey[..., None]
        img *= np.float32(look.saturation)
        img += grey[..., None]
    if look.scale != (1.0, 1.0, 1.0) or look.shift != (0.0, 0.0, 0.0):
        img *= np.asarray(look.scale, np.float32)
        img += np.asarray(look.shift, np.float32)
        np.clip(img, 0.0, 255.0, out=img)
    return img


def draw_figure(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, look: Look, cx: float, feet: float = FEET_Y,
                hat: int | None = None) -> None:
    """Paint one character standing with its feet at ``(cx, feet)`` into ``img`` (rows ``ys``, columns ``xs``),
    with hat ``hat`` (an index of ``world.HATS``) or bare-headed (``None``, as in reference portraits)."""
    # Only the figure's bounding box is evaluated: the sample grid is separable.
    c0, c1 = np.searchsorted(xs, cx - FIGURE_HALF_WIDTH), np.searchsorted(xs, cx + FIGURE_HALF_WIDTH)
    r0, r1 = np.searchsorted(ys, feet - FIGURE_TOP), np.searchsorted(ys, feet)
    if c1 <= c0 or r1 <= r0:
        return
    X, Y = np.meshgrid(xs[c0:c1], ys[r0:r1])
    sub = img[r0:r1, c0:c1]
    dx = X - cx
    legs = (Y >= feet - 0.06) & (np.abs(dx) >= 0.012) & (np.abs(dx) <= 0.035)
    sub[legs] = _LEGS
    top, bottom = feet - 0.19, feet - 0.06
    in_band = (Y >= top) & (Y <= bottom)
    if look.shape == "circle":
        torso = (dx / 0.055) ** 2 + ((Y - (top + bottom) / 2) / 0.065) ** 2 <= 1.0
    elif look.shape == "square":
        torso = in_band & (np.abs(dx) <= 0.047)
    elif look.shape == "triangle":
        torso = in_band & (np.abs(dx) <= 0.055 * (Y - top) / (bottom - top))
    else:
        raise ValueError(f"unknown torso shape {look.shape!r}")
    sub[torso] = look.body
    hx, hy, r = cx, feet - 0.225, 0.042
    head = dx**2 + (Y - hy) ** 2 <= r**2
    sub[head] = look.skin
    sub[head & (Y < hy - 0.012)] = look.hair
    eyes = ((np.abs(dx) - 0.015) ** 2 + (Y - hy - 0.002) ** 2) < 0.0065**2
    sub[eyes] = _EYES
    sub[(np.abs(Y - hy - 0.022) < 0.003) & (np.abs(X - hx) < 0.013)] = _MOUTH
    if hat is not None:  # a tall crown over the top of the head and a brim across it: big enough to see in a medium shot
        colour = HATS[hat].colour
        sub[(Y >= feet - FIGURE_TOP) & (Y <= feet - 0.255) & (np.abs(dx) <= 0.036)] = colour
        sub[(Y >= feet - 0.266) & (Y <= feet - HAT_BOTTOM) & (np.abs(dx) <= HAT_HALF_WIDTH)] = colour


def _axes(x0: float, y0: float, width: float, size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    n = size * ss
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * width
    return x0 + t, y0 + t


def _finish(img: np.ndarray, size: int, ss: int) -> np.ndarray:
    """Average ``ss x ss`` samples per pixel and round to ``uint8``."""
    img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def camera_window(camera: int, pan: float = 0.0) -> tuple[float, float, float]:
    """``(x0, y0, width)`` of a camera's window onto the world (horizontally centred, shifted by ``pan``)."""
    cam = CAMERAS[camera]
    return 0.5 - cam.width / 2 + pan, cam.y0, cam.width


def render_keyframe(plan: KeyframePlan, size: int = 32, ss: int = SUPERSAMPLE) -> np.ndarray:
    """Render one keyframe plan as ``uint8 [size, size, 3]``."""
    x0, y0, w = camera_window(plan.camera, plan.pan)
    xs, ys = _axes(x0, y0, w, size, ss)
    X, Y = np.meshgrid(xs, ys)
    img = apply_look(draw_background(LOCATIONS[plan.location], X, Y).astype(np.float32), PLACE_LOOKS[plan.look])
    hats = plan.hats or (None,) * len(plan.figures)
    for (char, _, _), cx, hat in zip(plan.figures, figure_centres(plan), hats):
        draw_figure(img, xs, ys, CHARACTERS[char], cx, hat=hat)
    return _finish(img, size, ss)


def figure_centres(plan: KeyframePlan) -> list[float]:
    """The world x of each figure's centre in ``plan`` (its stage position, nudged by its ``dx``, in the window)."""
    x0, _, w = camera_window(plan.camera, plan.pan)
    return [x0 + (POSITION_U[pos] + dx) * w for _, pos, dx in plan.figures]


def figure_boxes(plan: KeyframePlan, size: int = 32, part: str = "figure") -> np.ndarray:
    """``bool [size, size]``: the pixels of the figures' bounding boxes in ``render_keyframe(plan, size)`` (every
    pixel any figure can touch), or with ``part="hat"`` of their hats' boxes (figures with hats only), for training
    losses that weight the small figures and hats up."""
    x0, y0, w = camera_window(plan.camera, plan.pan)
    mask = np.zeros((size, size), bool)
    if part == "hat":
        top, bottom, half = FEET_Y - FIGURE_TOP, FEET_Y - HAT_BOTTOM, HAT_HALF_WIDTH
        centres = figure_centres(plan)[:len(plan.hats)]
    elif part == "figure":
        top, bottom, half = FEET_Y - FIGURE_TOP, FEET_Y, FIGURE_HALF_WIDTH
        centres = figure_centres(plan)
    else:
        raise ValueError(f"part must be 'figure' or 'hat', got {part!r}")
    r0, r1 = (np.array([top, bottom]) - y0) / w * size
    for cx in centres:
        c0, c1 = (np.array([cx - half, cx + half]) - x0) / w * size
        mask[max(0, int(np.floor(r0))):max(0, int(np.ceil(r1))), max(0, int(np.floor(c0))):max(0, int(np.ceil(c1)))] = True
    return mask


def render_reference(character: int, size: int = 64, ss: int = SUPERSAMPLE) -> np.ndarray:
    """A close-up of one character alone on a flat neutral grey background, ``uint8 [size, size, 3]``."""
    x0, y0, w = camera_window(len(CAMERAS) - 1)
    xs, ys = _axes(x0, y0, w, size, ss)
    img = np.empty((len(ys), len(xs), 3), np.float32)
    img[:] = NEUTRAL
    draw_figure(img, xs, ys, CHARACTERS[character], 0.5)
    return _finish(img, size, ss)
