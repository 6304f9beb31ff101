"""Character reference photos: finding them safely and reading them.

A reference is either a file name inside the host's input folder or an index into the IMAGE batch that
ScriptEncode receives. This module checks file references (inside the folder, present, non-empty, an image
of a sensible size) and loads them as ``uint8 [H, W, 3]`` RGB arrays, the form every face embedder takes.

Checking reads only the file's header: Pillow opens images lazily, so the size is known before a single
pixel is decoded, and a file that claims 40000 x 40000 pixels (a "decompression bomb": a few KB that would
decode to gigabytes) is refused by that claim. Loading applies the same limit before it decodes.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..paths import UnsafePathError, resolve_inside
from .limits import MAX_REFERENCE_PIXELS
from .problems import shown

#: Reference photos smaller than this cannot hold a usable face.
MIN_REFERENCE_SIDE = 16


class ReferenceTooLargeError(ValueError):
    """An image whose header claims more pixels than ``MAX_REFERENCE_PIXELS`` (or than Pillow's own bomb limit)."""


def _too_many_pixels(name: str, width: int, height: int) -> str:
    return (f'image "{shown(name)}" is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), more than the '
            f"limit of {MAX_REFERENCE_PIXELS / 1e6:.0f} megapixels for a reference photo; use a smaller copy")


#: Formats Pillow opens that a reference photo is never in and that run another program to decode: EPS is rendered
#: by Ghostscript (whatever the file's name says), a program with a history of flaws a crafted file exploits.
REFUSED_IMAGE_FORMATS = frozenset({"EPS"})


def _photo_formats() -> list[str]:
    Image.init()
    return [f for f in Image.OPEN if f not in REFUSED_IMAGE_FORMATS]


def _open_header(path: str, name: str):
    """``Image.open`` (header only) with Pillow's decompression-bomb error and warning turned into
    ``ReferenceTooLargeError``, and our own pixel limit applied; formats in ``REFUSED_IMAGE_FORMATS`` are not
    opened (an ``UnidentifiedImageError``, an unreadable image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path, formats=_photo_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ReferenceTooLargeError(f'image "{shown(name)}" is more than the limit of {MAX_REFERENCE_PIXELS / 1e6:.0f} '
                                     f"megapixels for a reference photo ({shown(str(e), 120)}); use a smaller copy") from e
    width, height = img.size
    if width * height > MAX_REFERENCE_PIXELS:
        img.close()
        raise ReferenceTooLargeError(_too_many_pixels(name, width, height))
    return img


def check_reference_file(input_dir: str, name: str) -> tuple[str | None, str | None, int]:
    """Return ``(resolved_path, None, pixels)`` for a usable reference file (its width x height, from its header), or
    ``(None, problem, 0)``.

    The problem text is phrased to follow the script location, e.g. ``references[0]: <problem>``.
    """
    try:
        path = resolve_inside(input_dir, name)
    except UnsafePathError as e:
        return None, f"{shown(str(e), 160)}; reference images must be inside the input folder", 0
    if not os.path.exists(path):
        return None, f'file "{shown(name)}" not found in the input folder', 0
    if not os.path.isfile(path):
        return None, f'"{shown(name)}" is not a file', 0
    if os.path.getsize(path) == 0:
        return None, f'file "{shown(name)}" is empty', 0
    try:
        with _open_header(path, name) as img:
            width, height = img.size
    except ReferenceTooLargeError as e:
        return None, str(e), 0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return None, f'file "{shown(name)}" is not a readable image ({type(e).__name__}: {shown(str(e), 120)})', 0
    if min(width, height) < MIN_REFERENCE_SIDE:
        return None, f'image "{shown(name)}" is too small ({width}x{height}; at least {MIN_REFERENCE_SIDE} px a side)', 0
    return path, None, width * height


def load_image_file(path: str) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB, honouring EXIF orientation (phone photos).

    The pixel limit is checked on the header first (``ReferenceTooLargeError``, a ``ValueError``)."""
    with _open_header(path, os.path.basename(path)) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in WIDE_GREY_MODES:
            return _wide_grey_to_rgb(img)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


#: Pillow's modes of one channel wider than 8 bits (a 16-bit greyscale PNG or TIFF opens as ``I;16``, some as ``I``; a
#: floating-point TIFF as ``F``). ``convert("RGB")`` clips their values to 0..255: a 16-bit portrait came out nearly
#: all white (99.6 % of its pixels 255), and a float one in 0..1 all black, and was embedded so.
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _wide_grey_to_rgb(img) -> np.ndarray:
    """A wide greyscale image as ``uint8 [H, W, 3]``: 16-bit integers scaled from 0..65535 (``I`` images holding
    only 0..255 are taken as 8-bit), floats from 0..1 (or 0..255 when larger values occur)."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
    else:
        scale = 1.0 / 257.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
    grey = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def image_tensor_to_uint8(image) -> np.ndarray:
    """One ComfyUI IMAGE entry (float ``[H, W, C]`` in 0..1, torch or numpy) to ``uint8 [H, W, 3]``."""
    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W, C], got shape {tuple(arr.shape)}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
