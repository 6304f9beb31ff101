"""Keyframe text: sidecar captions next to the video, or a user-supplied captioner, never a bundled model.

The planner reads three sentences per keyframe, action (the plot), scene and style (arXiv 2407.16655,
section 3.2; ``embeds.SEGMENTS``), plus one description per character. The paper captions its films with a
vision-language model; we bundle none and download none. Sources, first match wins per keyframe:

1. ``<video>.json`` (same folder, same stem), either a list with one entry per detected shot, or::

       {"style": "film noir, high contrast",
        "characters": {"Ava": "a tall woman in a red coat"},
        "shots": [{"action": "Ava walks in", "scene": "a bar at night"}, "a plain string is the action", ...]}

   An entry may carry ``"start"``/``"end"`` in seconds: it then applies to the keyframes inside that span
   (instead of by shot order).
2. ``<video>.srt``: the subtitles overlapping the keyframe's shot, joined, are the action.
3. ``--captioner module:function``: ``caption(image, context) -> str``, called with the keyframe (``uint8
   [H, W, 3]`` RGB) and ``context`` = ``{"video", "shot", "keyframe", "time", "characters", "subtitle"}``;
   its answer is the action sentence. Wrap any local captioning model this way.
4. Otherwise the action is the empty string (its text embedding is still computed, so the keyframe has the
   same shape of conditioning; the planner learns that an empty caption says nothing).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..text_files import TextFileError, read_text_file

#: ``caption(image, context) -> str``
Captioner = Callable[[np.ndarray, dict], str]


@dataclass
class Sidecar:
    kind: str = "none"  # "json", "srt" or "none"
    style: str = ""
    characters: dict = field(default_factory=dict)  # name -> description
    shots: list = field(default_factory=list)  # JSON entries: {"action", "scene", optional "start"/"end"}
    subtitles: list = field(default_factory=list)  # (start_s, end_s, text)


_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")


def _seconds(stamp: str) -> float:
    m = _TIME.search(stamp)
    if not m:
        raise ValueError(f"bad SRT time {stamp!r}")
    h, mi, s, frac = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac)


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """``[(start_s, end_s, text), ...]`` from SubRip text (tags like ``<i>`` removed)."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\ufeff", "").strip()):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        for k, line in enumerate(lines):
            if "-->" in line:
                a, b = line.split("-->", 1)
                body = " ".join(re.sub(r"<[^>]+>|\{[^}]+\}", "", ln).strip() for ln in lines[k + 1:]).strip()
                if body:
                    out.append((_seconds(a), _seconds(b), body))
                break
    return out


#: The largest captions file read (a film's captions are a few hundred KB; a larger file is not captions).
MAX_SIDECAR_BYTES = 64 * 2**20


def _text_of(value, where: str) -> str:
    """``value`` as text: a string, or ``null`` for nothing said (``""``); anything else is refused at ``where``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be text, got {_kind(value)}")
    return value


def _kind(value) -> str:
    """What a JSON value is, in the words of a captions file's author."""
    return "null" if value is None else {dict: "an object", list: "a list", bool: "true/false", int: "a number",
                                         float: "a number", str: "text"}.get(type(value), type(value).__name__)


def _shot_entry(entry, where: str) -> dict:
    if isinstance(entry, str):
        return {"action": entry, "scene": ""}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be text or an object, got {_kind(entry)}")
    key = "action" if "action" in entry or "text" not in entry else "text"
    out = {"action": _text_of(entry.get(key, ""), f"{where}.{key}"), "scene": _text_of(entry.get("scene", ""), f"{where}.scene")}
    if "start" in entry:
        for name in ("start", "end"):
            if name in entry and (isinstance(entry[name], bool) or not isinstance(entry[name], (int, float))):
                raise ValueError(f"{where}.{name}: must be seconds (a number), got {_kind(entry[name])}")
        try:
            start, end = float(entry["start"]), float(entry.get("end", float("inf")))
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError(f"{where}: start and end must be seconds a float can hold") from None
        if not math.isfinite(start) or start < 0 or math.isnan(end) or end < start:
            raise ValueError(f"{where}: start must be a number of seconds of at least 0 and end one after it (or left "
                             f"out: to the video's end), got start {start!r}, end {end!r}")
        out["start"], out["end"] = start, end
    return out


def _read_json_sidecar(path: str) -> Sidecar:
    """A ``<video>.json`` captions file, every malformed part named (``shots[2].action: must be text, got null``)."""
    data = json.loads(read_text_file(path, MAX_SIDECAR_BYTES))
    if isinstance(data, list):
        data = {"shots": data}
    if not isinstance(data, dict):
        raise ValueError(f"must be a list of shots or an object with style, characters and shots, got {_kind(data)}")
    characters = data.get("characters") or {}
    if not isinstance(characters, dict):
        raise ValueError(f"characters: must be an object {{name: description}}, got {_kind(characters)}")
    shots = data.get("shots", [])
    if not isinstance(shots, list):
        raise ValueError(f"shots: must be a list, got {_kind(shots)}")
    return Sidecar("json", style=_text_of(data.get("style", ""), "style"),
                   characters={str(k): _text_of(v, f"characters.{k}") for k, v in characters.items()},
                   shots=[_shot_entry(e, f"shots[{i}]") for i, e in enumerate(shots)])


def load_sidecar(video_path: str) -> Sidecar:
    """The captions beside ``video_path`` (JSON preferred over SRT); ``ValueError`` names a malformed file and the
    part of it that is wrong."""
    stem = os.path.splitext(video_path)[0]
    if os.path.isfile(stem + ".json"):
        try:
            return _read_json_sidecar(stem + ".json")
        except TextFileError as e:
            raise ValueError(f"{stem}.json {e}") from e
        except ValueError as e:  # json.JSONDecodeError, and the malformed parts _read_json_sidecar names
            raise ValueError(f"{stem}.json: {e}") from e
        except RecursionError:
            raise ValueError(f"{stem}.json: nested too deeply to be a captions file") from None
    if os.path.isfile(stem + ".srt"):
        try:  # subtitles in another encoding are read with U+FFFD for what is not UTF-8
            return Sidecar("srt", subtitles=parse_srt(read_text_file(stem + ".srt", MAX_SIDECAR_BYTES, errors="replace")))
        except TextFileError as e:
            raise ValueError(f"{stem}.srt {e}") from e
    return Sidecar()


def sidecar_text(sidecar: Sidecar, shot: int, span: tuple[float, float], time: float) -> Optional[dict]:
    """``{"action", "scene"}`` for a keyframe at ``time`` in shot ``shot`` spanning ``span`` seconds, or
    ``None`` when the sidecar says nothing about it."""
    if sidecar.kind == "json":
        timed = [e for e in sidecar.shots if "start" in e]
        if timed:
            for e in timed:
                if e["start"] <= time < e["end"]:
                    return e
            return None
        return sidecar.shots[shot] if shot < len(sidecar.shots) else None
    if sidecar.kind == "srt":
        texts = [t for a, b, t in sidecar.subtitles if a < span[1] and b > span[0]]
        return {"action": " ".join(texts), "scene": ""} if texts else None
    return None


def load_captioner(spec) -> Optional[Captioner]:
    """``None``, a callable, or ``"module:function"`` (imported; the module must be importable)."""
    if spec is None or callable(spec):
        return spec
    module, _, name = str(spec).partition(":")
    if not module or not name:
        raise ValueError(f"--captioner must be module:function, got {spec!r}")
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise ValueError(f"--captioner {spec}: {name} is not callable")
    return fn
