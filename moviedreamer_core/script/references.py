"""Character reference photos: finding them safely and reading them.

A reference is either a file name inside the host's input folder or an index into the IMAGE batch that
ScriptEncode receives. This module checks file references (inside the folder, present, non-empty, a
readable image) and loads them as ``uint8 [H, W, 3]`` RGB arrays, the form every face embedder takes.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..paths import UnsafePathError, resolve_inside

#: Reference photos smaller than this cannot hold a usable face.
MIN_REFERENCE_SIDE = 16


def check_reference_file(input_dir: str, name: str) -> tuple[str | None, str | None]:
    """Return ``(resolved_path, None)`` for a usable reference file, or ``(None, problem)``.

    The problem text is phrased to follow the script location, e.g. ``references[0]: <problem>``.
    """
    try:
        path = resolve_inside(input_dir, name)
    except UnsafePathError as e:
        return None, f"{e}; reference images must be inside the input folder"
    if not os.path.exists(path):
        return None, f'file "{name}" not found in the input folder'
    if not os.path.isfile(path):
        return None, f'"{name}" is not a file'
    if os.path.getsize(path) == 0:
        return None, f'file "{name}" is empty'
    try:
        with Image.open(path) as img:
            img.load()
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return None, f'file "{name}" is not a readable image ({type(e).__name__}: {e})'
    if min(width, height) < MIN_REFERENCE_SIDE:
        return None, f'image "{name}" is too small ({width}x{height}; at least {MIN_REFERENCE_SIDE} px a side)'
    return path, None


def load_image_file(path: str) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB, honouring EXIF orientation (phone photos)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def image_tensor_to_uint8(image) -> np.ndarray:
    """One ComfyUI IMAGE entry (float ``[H, W, C]`` in 0..1, torch or numpy) to ``uint8 [H, W, 3]``."""
    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W, C], got shape {tuple(arr.shape)}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
