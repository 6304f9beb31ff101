"""Scores that compare predicted keyframe labels with the ground truth (lists of ``FrameLabel``).

* ``location_accuracy`` and ``camera_accuracy``: fraction of keyframes with the right class.
* ``character_f1``: micro-averaged F1 of character presence over all (keyframe, character) pairs; 1.0 when
  neither side has anybody on screen.
* ``character_set_match``: fraction of keyframes whose set of characters on screen is exactly right.
* ``position_accuracy``: among characters correctly found on screen, fraction at the right position.
* ``trivial_scores``: what constant guesses reach on the same labels (the chance levels to beat).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from .film import FrameLabel


def _check(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> None:
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions for {len(true)} labels")
    if not true:
        raise ValueError("no labels to score")


def location_accuracy(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> float:
    _check(pred, true)
    return sum(p.location == t.location for p, t in zip(pred, true)) / len(true)


def camera_accuracy(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> float:
    _check(pred, true)
    return sum(p.camera == t.camera for p, t in zip(pred, true)) / len(true)


def character_f1(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> float:
    _check(pred, true)
    tp = sum(len(p.characters & t.characters) for p, t in zip(pred, true))
    fp = sum(len(p.characters - t.characters) for p, t in zip(pred, true))
    fn = sum(len(t.characters - p.characters) for p, t in zip(pred, true))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def character_set_match(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> float:
    _check(pred, true)
    return sum(p.characters == t.characters for p, t in zip(pred, true)) / len(true)


def position_accuracy(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> float:
    _check(pred, true)
    hits = total = 0
    for p, t in zip(pred, true):
        where = dict(p.on_screen)
        for c, pos in t.on_screen:
            if c in where:
                total += 1
                hits += where[c] == pos
    return hits / total if total else 1.0


def score_labels(pred: Sequence[FrameLabel], true: Sequence[FrameLabel]) -> dict[str, float]:
    """All scores at once."""
    return {
        "location_accuracy": location_accuracy(pred, true),
        "camera_accuracy": camera_accuracy(pred, true),
        "character_f1": character_f1(pred, true),
        "character_set_match": character_set_match(pred, true),
        "position_accuracy": position_accuracy(pred, true),
    }


def trivial_scores(true: Sequence[FrameLabel], n_characters: int | None = None) -> dict[str, float]:
    """Chance levels on these labels: the best constant guess for each score (majority location, majority
    camera, most common character set; for F1 the better of "the most common set" and "everybody")."""
    _check(true, true)
    loc = Counter(t.location for t in true).most_common(1)[0][1] / len(true)
    cam = Counter(t.camera for t in true).most_common(1)[0][1] / len(true)
    common_set, count = Counter(t.characters for t in true).most_common(1)[0]
    everybody = frozenset(range(n_characters)) if n_characters else frozenset(c for t in true for c in t.characters)
    f1 = max(
        character_f1([FrameLabel(0, 0, tuple((c, 0) for c in sorted(s))) for _ in true], true)
        for s in (common_set, everybody)
    )
    return {"location_accuracy": loc, "camera_accuracy": cam, "character_f1": f1, "character_set_match": count / len(true)}
