"""Checks of one dataset movie file (``planner/train.py``'s format) before a trainer reads it.

A dataset folder is the user's: films built on several machines, datasets merged by hand, a file from another
encoder, an ``index.json`` edited. Without checks such a file failed deep inside training (``KeyError:
'moviedreamer_movie'``, a shape mismatch in ``torch.cat`` at some step, or NaN losses from a NaN token); here it is
refused when read, naming the file and the tensor at fault, and its sizes are checked against the dataset's spaces
(``index.json``), so a film of another text, identity or token space is found before the first step.
"""

from __future__ import annotations

from typing import Optional

import torch
from safetensors import safe_open

from ..text_files import loads_json
from .inputs import CAMERAS

#: Tensors every movie file has (``save_movie``); ``tokens`` is required for training and checked there.
REQUIRED = ("keyframe_text", "style", "descriptions", "identity_bank", "identity_offsets", "keyframe_characters")
#: Optional tensors that come in pairs: one without the other is a damaged file.
PAIRS = (("reference_tokens", "reference_offsets"), ("keyframe_mentions", "mention_present"))


class MovieFileError(ValueError):
    """A dataset movie file that cannot be trained on; the message names the file and what is wrong."""


def movie_metadata(path: str, metadata: Optional[dict]) -> dict:
    """The file's ``moviedreamer_movie`` metadata (spaces, character names), or ``MovieFileError``."""
    raw = (metadata or {}).get("moviedreamer_movie")
    if raw is None:
        raise MovieFileError(f"{path}: not a MovieDreamer movie file (no 'moviedreamer_movie' metadata; dataset "
                             "movies are written by python -m moviedreamer_core.data build)")
    try:
        meta = loads_json(raw)
    except ValueError as e:
        raise MovieFileError(f"{path}: its 'moviedreamer_movie' metadata is not JSON ({e})") from e
    if not isinstance(meta, dict):
        raise MovieFileError(f"{path}: its 'moviedreamer_movie' metadata is not an object")
    return meta


def check_movie(path: str, t: dict, spaces: Optional[dict] = None) -> None:
    """Refuse (``MovieFileError``) a movie whose tensors are missing, disagree with each other (keyframe counts,
    cast size, offsets into the banks, character indices, camera indices), are not finite, or do not have the sizes
    of ``spaces`` (``{"text_space": {"dim"}, "identity_space": {"dim"}, "token_space": {"K", "D"}}``, the
    dataset's)."""
    check_movie_shapes(path, {k: (tuple(v.shape), v.is_floating_point()) for k, v in t.items()}, spaces)
    _check_values(path, t)


def read_movie_file(path: str, read) -> tuple:
    """``(metadata, read(f))`` of the movie file at ``path`` opened with ``safe_open``; a file that is missing, is not
    safetensors or has no movie metadata is a ``MovieFileError`` naming it."""
    try:
        with safe_open(path, framework="pt") as f:
            return movie_metadata(path, f.metadata()), read(f)
    except MovieFileError:
        raise
    except Exception as e:  # a missing file, or not safetensors (safetensors raises its own error types)
        raise MovieFileError(f"{path}: cannot be read as a safetensors movie file ({type(e).__name__}: {e})") from e


def check_movie_header(path: str, spaces: Optional[dict] = None) -> None:
    """``check_movie_shapes`` from the file's header alone (no tensor is read): what a trainer that reads its films
    on demand checks of every film before its first step."""
    _, shapes = read_movie_file(path, lambda f: {k: (tuple(f.get_slice(k).get_shape()),
                                                     f.get_slice(k).get_dtype() in _FLOAT_DTYPES) for k in f.keys()})
    check_movie_shapes(path, shapes, spaces)


_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def check_movie_shapes(path: str, shapes: dict, spaces: Optional[dict] = None) -> None:
    """The part of ``check_movie`` that needs only each tensor's shape and whether it is floating point
    (``shapes``: ``{name: (shape, is_float)}``): present tensors, dimensions that agree, the spaces' sizes."""
    def fail(what: str):
        raise MovieFileError(f"{path}: {what}")

    missing = [k for k in REQUIRED if k not in shapes]
    if missing:
        fail(f"missing tensors {missing}")
    for a, b in PAIRS:
        if (a in shapes) != (b in shapes):
            fail(f"has {a if a in shapes else b} without {b if a in shapes else a}")

    def shape(name: str, dims: int):
        s = shapes[name][0]
        if len(s) != dims:
            fail(f"{name} has shape {list(s)}, expected {dims} dimensions")
        return s

    def offsets(name: str, characters: int):
        if shape(name, 1)[0] != characters + 1 or shapes[name][1]:
            fail(f"{name} has shape {list(shapes[name][0])}, expected [{characters + 1}] whole numbers (one more than "
                 "the cast)")

    n, _, dt = shape("keyframe_text", 3)
    (c, dt_desc), (dt_style,) = shape("descriptions", 2), shape("style", 1)
    if dt_desc != dt or dt_style != dt:
        fail(f"text sizes disagree: keyframe_text {dt}, descriptions {dt_desc}, style {dt_style}")
    _, di = shape("identity_bank", 2)
    offsets("identity_offsets", c)
    cast = shape("keyframe_characters", 2)
    if cast[0] != n:
        fail(f"keyframe_characters has {cast[0]} rows for {n} keyframes (keyframe_text)")
    k = d = None
    if "tokens" in shapes:
        tn, k, d = shape("tokens", 3)
        if tn != n:
            fail(f"tokens has {tn} keyframes, keyframe_text {n}")
    if "reference_tokens" in shapes:
        _, rk, rd = shape("reference_tokens", 3)
        if k is not None and (rk, rd) != (k, d):
            fail(f"reference_tokens are [{rk}, {rd}] tokens, the keyframes' [{k}, {d}]")
        offsets("reference_offsets", c)
    if "keyframe_camera" in shapes:
        (cn,) = shape("keyframe_camera", 1)
        if cn != n:
            fail(f"keyframe_camera has {cn} keyframes, keyframe_text {n}")
    if "keyframe_mentions" in shapes:
        mn, m, mdt = shape("keyframe_mentions", 3)
        if (mn, mdt) != (n, dt) or tuple(shapes["mention_present"][0]) != (n, m):
            fail(f"keyframe_mentions {[mn, m, mdt]} / mention_present {list(shapes['mention_present'][0])} do not fit "
                 f"{n} keyframes of text size {dt}")
    if spaces:
        want = {"text": (spaces.get("text_space") or {}).get("dim"), "identity": (spaces.get("identity_space") or {}).get("dim")}
        tokens = spaces.get("token_space") or {}
        if want["text"] is not None and dt != want["text"]:
            fail(f"its texts have {dt} values, the dataset's text space {want['text']} (index.json text_space)")
        if want["identity"] is not None and di != want["identity"]:
            fail(f"its identities have {di} values, the dataset's identity space {want['identity']} (index.json identity_space)")
        if k is not None and tokens.get("K") is not None and (k, d) != (tokens.get("K"), tokens.get("D")):
            fail(f"its tokens are [{k}, {d}], the dataset's token space [{tokens.get('K')}, {tokens.get('D')}] "
                 "(index.json token_space)")


def _check_values(path: str, t: dict) -> None:
    """The part of ``check_movie`` that reads the values (shapes already checked): offsets, indices, finiteness."""
    def fail(what: str):
        raise MovieFileError(f"{path}: {what}")

    c = t["descriptions"].shape[0]
    _rising(t, "identity_offsets", t["identity_bank"].shape[0], fail)
    if "reference_offsets" in t:
        _rising(t, "reference_offsets", t["reference_tokens"].shape[0], fail)
    chars = t["keyframe_characters"]
    if chars.numel() and (int(chars.min()) < -1 or int(chars.max()) >= c):
        fail(f"keyframe_characters names character {int(chars.max()) if int(chars.max()) >= c else int(chars.min())}; "
             f"the film has {c} (descriptions), -1 pads")
    cam = t.get("keyframe_camera")
    if cam is not None and cam.numel() and (int(cam.min()) < -1 or int(cam.max()) >= len(CAMERAS)):
        fail(f"keyframe_camera holds values outside -1..{len(CAMERAS) - 1} (the script's cameras)")
    for name, value in t.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            fail(f"{name} holds NaN or infinite values")


def _rising(t: dict, name: str, rows: int, fail) -> None:
    """Offsets ``name`` must rise from 0 to ``rows``."""
    values = t[name].tolist()
    if values[0] != 0 or values[-1] != rows or any(b < a for a, b in zip(values, values[1:])):
        fail(f"{name} {values[:8]}{'...' if len(values) > 8 else ''} must rise from 0 to {rows}")
