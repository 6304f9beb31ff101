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
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

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


def _shot_entry(entry) -> dict:
    if isinstance(entry, str):
        return {"action": entry, "scene": ""}
    if not isinstance(entry, dict):
        raise ValueError(f"a shot entry must be a string or an object, got {type(entry).__name__}")
    out = {"action": str(entry.get("action", entry.get("text", ""))), "scene": str(entry.get("scene", ""))}
    if "start" in entry:
        out["start"], out["end"] = float(entry["start"]), float(entry.get("end", float("inf")))
    return out


def load_sidecar(video_path: str) -> Sidecar:
    """The captions beside ``video_path`` (JSON preferred over SRT); ``ValueError`` names a malformed file."""
    stem = os.path.splitext(video_path)[0]
    if os.path.isfile(stem + ".json"):
        try:
            with open(stem + ".json", encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, list):
                data = {"shots": data}
            return Sidecar("json", style=str(data.get("style", "")),
                           characters={str(k): str(v) for k, v in (data.get("characters") or {}).items()},
                           shots=[_shot_entry(e) for e in data.get("shots", [])])
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{stem}.json: {e}") from e
    if os.path.isfile(stem + ".srt"):
        with open(stem + ".srt", encoding="utf-8", errors="replace") as f:
            try:
                return Sidecar("srt", subtitles=parse_srt(f.read()))
            except ValueError as e:
                raise ValueError(f"{stem}.srt: {e}") from e
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
