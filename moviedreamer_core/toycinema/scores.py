"""Scores that compare predicted keyframe labels with the ground truth (lists of ``FrameLabel``).

* ``location_accuracy`` and ``camera_accuracy``: fraction of keyframes with the right class.
* ``character_f1``: micro-averaged F1 of character presence over all (keyframe, character) pairs; 1.0 when
  neither side has anybody on screen.
* ``character_set_match``: fraction of keyframes whose set of characters on screen is exactly right.
* ``position_accuracy``: among characters correctly found on screen, fraction at the right position.
* ``trivial_scores``: what constant guesses reach on the same labels (the chance levels to beat).
* ``count_scores``: place by place (``counting.PlaceCounter`` readings, one occupant or nobody per screen place)
  against the ground truth: exact cast, extra and missing figures, characters drawn twice, per camera size and per
  number of characters on screen.
* ``unscripted_scores``: the per-film state the script leaves unsaid (issue #21): on every keyframe whose script does
  not say it, is the place's look the film's, and does each character in a medium or close-up keyframe wear the
  film's hat (``probe.Probe.read_state``), against the chance of a guess that knows nothing of the film.
"""


from __future__ import annotations

from collections import Counter
from typing import Sequence, Union

from .film import FrameLabel
from .world import CAMERAS, N_POSITIONS


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


# ------------------------------------------------------------------------------ count-aware (place by place)

#: The per-keyframe outcomes ``count_scores`` reports as shares of keyframes.
COUNT_KEYS = ("exact_cast", "count_right", "extra_figures", "missing_figures", "doubled")


def places_of(label: FrameLabel) -> tuple[int, ...]:
    """The ground truth place by place: the character id at each of ``world.POSITIONS``, ``-1`` where nobody stands."""
    out = [-1] * N_POSITIONS
    for c, p in label.on_screen:
        out[p] = c
    return tuple(out)


def _occupants(reading) -> tuple[int, ...]:
    occupants = tuple(getattr(reading, "occupants", reading))
    if len(occupants) != N_POSITIONS:
        raise ValueError(f"a reading has one occupant per place ({N_POSITIONS}), got {occupants}")
    return occupants


def keyframe_outcome(reading, label: FrameLabel) -> dict[str, bool]:
    """One keyframe: ``exact_cast`` (the right character at every place, nobody elsewhere: right characters, right
    count, right places), ``count_right``, ``extra_figures`` / ``missing_figures`` (more / fewer figures drawn than
    the script puts on screen), ``doubled`` (one character drawn at two places or more)."""
    read, true = _occupants(reading), places_of(label)
    n_read, n_true = sum(c >= 0 for c in read), sum(c >= 0 for c in true)
    drawn = [c for c in read if c >= 0]
    return {"exact_cast": read == true, "count_right": n_read == n_true, "extra_figures": n_read > n_true,
            "missing_figures": n_read < n_true, "doubled": len(drawn) != len(set(drawn))}


def _shares(outcomes: list[dict[str, bool]]) -> dict[str, Union[float, int]]:
    out: dict[str, Union[float, int]] = {k: sum(o[k] for o in outcomes) / len(outcomes) for k in COUNT_KEYS}
    out["keyframes"] = len(outcomes)
    return out


def count_scores(read: Sequence, true: Sequence[FrameLabel]) -> dict:
    """Count-aware scores of place readings (``PlaceReading``s or occupant tuples) against the ground truth.

    Shares of keyframes (``COUNT_KEYS``, see ``keyframe_outcome``) over all keyframes, ``by_camera`` (camera name ->
    the same, for the cameras present) and ``by_count`` (characters the script puts on screen, "0" to "3" -> the
    same), ``extra_figures_wide`` (the share of wide keyframes with extra figures, ``nan`` without wide keyframes) and
    ``count_confusion`` (camera name -> ``"true count -> read count"`` -> keyframes, wrong counts only)."""
    _check(read, true)
    outcomes = [keyframe_outcome(r, t) for r, t in zip(read, true)]
    out = _shares(outcomes)
    by_camera: dict[str, list] = {}
    by_count: dict[str, list] = {}
    confusion: dict[str, Counter] = {}
    for r, t, o in zip(read, true, outcomes):
        cam = CAMERAS[t.camera].name
        by_camera.setdefault(cam, []).append(o)
        by_count.setdefault(str(len(t.on_screen)), []).append(o)
        n_read = sum(c >= 0 for c in _occupants(r))
        if n_read != len(t.on_screen):
            confusion.setdefault(cam, Counter())[f"{len(t.on_screen)} -> {n_read}"] += 1
    out["by_camera"] = {c.name: _shares(by_camera[c.name]) for c in CAMERAS if c.name in by_camera}
    out["by_count"] = {k: _shares(by_count[k]) for k in sorted(by_count)}
    wide = out["by_camera"].get("wide")
    out["extra_figures_wide"] = wide["extra_figures"] if wide else float("nan")
    out["count_confusion"] = {cam: dict(sorted(c.items())) for cam, c in confusion.items()}
    return out


def unscripted_scores(states: Sequence[dict], films: Sequence) -> dict:
    """How well the keyframes keep the per-film state their scripts leave unsaid (``Film.unscripted``).

    ``states``: ``probe.Probe.read_state`` of every keyframe of ``films``, in order. Items: each keyframe whose shot
    does not state its place's look (right when the look read is the film's), and each character on screen in a medium
    or close-up keyframe whose shot does not state its hat (right when the hat read at the character's screen place is
    the film's). Returns ``unscripted_state`` (all items), ``unscripted_look``, ``unscripted_hat``, their item counts and
    ``unscripted_chance``: the best share a guess that knows nothing of the film reaches on the same items (each
    kind's most frequent value, pooled), which a planner without history cannot beat except by luck."""
    from .probe import HAT_CAMERAS

    n_keyframes = sum(film.n_keyframes for film in films)
    if n_keyframes != len(states):
        raise ValueError(f"{len(states)} state readings for {n_keyframes} keyframes")
    if any(s.get("look") is None or s.get("hats") is None for s in states):
        raise ValueError("state readings without a look or hats: read them with a probe that has the look and hat heads")
    looks, hats = [], []
    look_truth, hat_truth = Counter(), Counter()
    i = 0
    for film in films:
        for plan, unsaid in zip(film.keyframes, film.unscripted()):
            state = states[i]
            i += 1
            if unsaid["look"] is not None:
                looks.append(state["look"] == unsaid["look"])
                look_truth[unsaid["look"]] += 1
            if plan.camera in HAT_CAMERAS:
                for c, p, _ in plan.figures:
                    if c in unsaid["hats"]:
                        hats.append(state["hats"][p] == unsaid["hats"][c])
                        hat_truth[unsaid["hats"][c]] += 1
    n = len(looks) + len(hats)
    best = (max(look_truth.values(), default=0) + max(hat_truth.values(), default=0)) / n if n else float("nan")
    return {"unscripted_state": (sum(looks) + sum(hats)) / n if n else float("nan"),
            "unscripted_look": sum(looks) / len(looks) if looks else float("nan"),
            "unscripted_hat": sum(hats) / len(hats) if hats else float("nan"),
            "unscripted_chance": best, "unscripted_items": {"look": len(looks), "hat": len(hats)}}
