"""Scenes as the planner learnt them: each script's scene sentence planned as the nearest one of its training films.

Why (issue #21, the toy cinema): a planner trained on a closed world, a few places each written in a few phrasings,
reads a scene sentence it never saw as a place it may not be. Its place from the planned tokens was 0.95 on the
development and test films, and most of the misses were held-out phrasings ("a stretch of shore by the sea" planned
as the meadow), although the sentence encoder puts each held-out phrasing nearest a training sentence of its own
place: the planner's reading of the embedding is brittle where the encoder's geometry is not. A planner with
``PlannerConfig.snap_scenes`` keeps the distinct scene embeddings of its training films (tensor ``scene_bank``,
``PlannerConfig.scene_bank`` rows) and plans each keyframe's scene segment as the nearest of them by cosine, keeping
``PlannerConfig.snap_keep`` of the sentence's own difference from it (``snap_to_bank``): a new phrasing of a trained
place becomes (nearly) a sentence the planner read in training. A trained
sentence is its own nearest, so planning the training films is unchanged. The script's own scene sentence still
reaches the renderer's prompt. This is for closed worlds: a dataset whose films describe their scenes freely has as
many scene sentences as shots, and more than ``MAX_SCENE_BANK`` distinct ones is refused with the field's name.

Empty shots the same way (``PlannerConfig.snap_empty``, tensor ``empty_bank``): every empty shot of the toy films says
so ("Nobody is in the desert; the wind blows.", "Nothing moves."), and the planner learnt the empty shot from those
words rather than from the script's empty cast (the sequence has no KIDENT element then, but the words predicted it as
well in every training film): a user's "Morning comes." or "A bird flies past." with nobody on screen was drawn with a
figure, 12 of 12 keyframes (an audit), and training on 144 other nameless sentences still drew 10 of 12 with one. A
planner that keeps the distinct actions of its training films' empty keyframes plans the action of every keyframe with
nobody on screen as the one of them nearest its action and scene together (``snap_empty_actions``, nothing of the
sentence's own kept: what an empty shot's action says beyond "nobody" is nothing the planner learnt to draw). The
script's own action still reaches the renderer's prompt.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from safetensors import safe_open

from ..embeds import SEGMENTS

#: Most distinct training scene sentences a planner keeps (1.5 MB of float32 at 384 dimensions).
MAX_SCENE_BANK = 1024
#: Two embeddings of one sentence, encoded in different batches, may differ in the last bits (padding).
SAME_SENTENCE = 1e-4
SCENE = SEGMENTS.index("scene")
ACTION = SEGMENTS.index("action")

#: What both trainers say when they keep the bank.
SNAP_SCENES_MESSAGE = ("planner.snap_scenes: the planner keeps the {n} distinct scene sentences of its training films "
                       "and plans each script's scene as the nearest of them")
SNAP_EMPTY_MESSAGE = ("planner.snap_empty: the planner keeps the {n} distinct actions of its training films' keyframes "
                      "with nobody on screen and plans the action of each such keyframe of a script as the one of "
                      "them nearest its action and scene")
NO_EMPTY_MESSAGE = ("planner.snap_empty: no keyframe of the training films has nobody on screen; the planner keeps no "
                    "empty-shot actions")


#: The banks a planner keeps: each is a config field (its rows) and a tensor of the same name, filled by the trainers
#: from the training films, never by a user (``keep_banks``).
KEPT_BANKS = ("scene_bank", "empty_bank")


class TooManyScenes(ValueError):
    """More distinct training scene sentences than ``MAX_SCENE_BANK``."""


def distinct_scenes(per_film: Iterable[torch.Tensor], limit: int = MAX_SCENE_BANK, *, flag: str = "snap_scenes",
                    what: str = "scene sentences", allow_none: bool = False) -> torch.Tensor:
    """The distinct rows ``[n, Dt]`` of each film's scene embeddings (``per_film`` yields ``[n_kf, Dt]``), in the order
    first seen; rows within ``SAME_SENTENCE`` of a kept one are the same sentence. ``TooManyScenes`` past ``limit``.
    Also the empty shots' actions (``distinct_empty_actions``: ``flag`` and ``what`` name them in the refusal; no row
    at all is an empty bank there, ``allow_none``)."""
    kept = None
    for rows in per_film:
        rows = rows.detach().float().cpu().reshape(-1, rows.shape[-1])
        if kept is not None and len(rows):  # a film's sentences the bank holds already, all at once (most of them)
            rows = rows[_distance_to_bank(rows, kept) > SAME_SENTENCE]
        for row in rows:
            if kept is not None and float(_distance_to_bank(row[None], kept)[0]) <= SAME_SENTENCE:
                continue
            if kept is not None and len(kept) >= limit:
                raise TooManyScenes(f"planner.{flag}: the training films have more than {limit} different {what}; "
                                    f"snapping is for a closed world that says them in a few words (set "
                                    f"planner.{flag}=false)")
            kept = row[None] if kept is None else torch.cat([kept, row[None]])
    if kept is None:
        if allow_none:
            return torch.zeros(0, 0)
        raise TooManyScenes(f"planner.{flag}: the training films have no keyframes")
    return kept


def empty_actions(keyframe_text: torch.Tensor, casts) -> torch.Tensor:
    """``[n, Dt]``: the action embeddings of a film's keyframes with nobody on screen (``casts``: per keyframe, the
    characters on screen; ``keyframe_text [N, S, Dt]``)."""
    return keyframe_text[_empty_rows(casts), ACTION]


def _empty_rows(casts) -> torch.Tensor:
    """``[n]`` long: the keyframes whose cast (``casts``: per keyframe, the characters on screen) is empty."""
    return torch.tensor([k for k, cast in enumerate(casts) if len(cast) == 0], dtype=torch.long)


def distinct_empty_actions(per_film: Iterable[torch.Tensor], limit: int = MAX_SCENE_BANK) -> torch.Tensor:
    """The distinct actions ``[n, Dt]`` of the training films' empty keyframes (``per_film`` yields ``empty_actions``);
    ``[0, 0]`` when no film has one. ``TooManyScenes`` past ``limit``."""
    return distinct_scenes(per_film, limit, flag="snap_empty", what="actions of shots with nobody on screen",
                           allow_none=True)


def movie_empty_actions(path: str) -> torch.Tensor:
    """A movie file's ``empty_actions``, reading its ``keyframe_characters`` and the action segment only."""
    with safe_open(path, framework="pt") as f:
        cast = f.get_tensor("keyframe_characters")
        empty = torch.nonzero((cast < 0).all(-1)).flatten()  # -1 pads; a row of pads only: nobody on screen
        return f.get_slice("keyframe_text")[:, ACTION:ACTION + 1][:, 0][empty].clone()


def training_banks(scenes: Optional[Iterable[torch.Tensor]], empty: Optional[Iterable[torch.Tensor]]):
    """``(banks, messages)``: the banks a planner keeps from its training films, ``{name in KEPT_BANKS: rows}``, and
    what the trainer says of each. ``scenes``: each film's scene embeddings (``snap_scenes``), ``empty``: each film's
    ``empty_actions`` (``snap_empty``); ``None`` where the planner keeps no such bank. ``TooManyScenes`` past the
    limit (each trainer reports it in its own way)."""
    banks, messages = {}, []
    if scenes is not None:
        banks["scene_bank"] = distinct_scenes(scenes)
        messages.append(SNAP_SCENES_MESSAGE.format(n=len(banks["scene_bank"])))
    if empty is not None:
        banks["empty_bank"] = distinct_empty_actions(empty)
        n = len(banks["empty_bank"])
        messages.append(SNAP_EMPTY_MESSAGE.format(n=n) if n else NO_EMPTY_MESSAGE)
    return banks, messages


def keep_banks(planner, banks: dict):
    """``planner`` with each bank of ``banks`` (name in ``KEPT_BANKS`` -> rows) copied into its tensor of that name."""
    for name, rows in banks.items():
        if len(rows):
            getattr(planner, name).copy_(rows)
    return planner


def snap_empty_actions(text: torch.Tensor, casts, bank: torch.Tensor) -> torch.Tensor:
    """``text [N, S, Dt]`` with the action of each keyframe whose cast (``casts``) is empty replaced by the action of
    ``bank`` (the training films' empty keyframes) nearest its action and its scene together (the sum of the two
    cosines); an action that is one of the bank's stays itself. A new copy, or ``text`` itself when no keyframe is
    empty or the bank holds nothing.

    Why the scene too: most toy empty-shot sentences name their place ("There is no one in the forest; wind blows."),
    and a user's sentence says nothing of one, so its nearest by the action alone is a sentence of any place: 71 of 140
    (20 sentences x 7 toy scenes) named another place than the scene, and the planner drew a figure for "The shadows
    grow longer." in the desert, snapped to the forest's sentence (2 of 2 seeds), where "Nothing moves." was drawn
    empty; by action and scene, 1 of 140."""
    at = _empty_rows(casts)
    if not len(at) or bank.shape[0] == 0:
        return text
    text = text.clone()
    actions, bank = text[at, ACTION], bank.to(text.device, text.dtype)
    nearest = bank[(_cosines(actions, bank) + _cosines(text[at, SCENE], bank)).argmax(-1)]
    known = (_distance_to_bank(actions, bank) <= SAME_SENTENCE).to(text.device)
    text[at, ACTION] = torch.where(known[:, None], actions, nearest)
    return text


def movie_scenes(path: str) -> torch.Tensor:
    """A movie file's scene embeddings ``[n_kf, Dt]`` (its ``keyframe_text`` scene segment), nothing else read."""
    with safe_open(path, framework="pt") as f:
        return f.get_slice("keyframe_text")[:, SCENE:SCENE + 1][:, 0].clone()


def nearest_in_bank(scenes: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """For each row of ``scenes [n, Dt]``, the row of ``bank [m, Dt]`` nearest by cosine."""
    if scenes.shape[0] == 0:
        return scenes
    bank = bank.to(scenes.device, scenes.dtype)
    return bank[_cosines(scenes, bank).argmax(-1)]


def _cosines(scenes: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``[n, m]``: the cosine of each row of ``scenes`` to each row of ``bank``."""
    return torch.nn.functional.normalize(scenes, dim=-1) @ torch.nn.functional.normalize(bank, dim=-1).T


def snap_to_bank(scenes: torch.Tensor, bank: torch.Tensor, keep: float = 0.0) -> torch.Tensor:
    """Each row of ``scenes`` moved to its nearest row of ``bank``, keeping ``keep`` of its own difference from it
    (``PlannerConfig.snap_keep``: 0 is the trained sentence itself; a trained sentence stays itself whatever ``keep``).
    Why keep some: a new phrasing of a place *and* of its light ("..., in the warm glow of dusk") is nearest the
    training sentence of that place in another light in about one stated light in thirteen (the place dominates the
    sentence's embedding); half of the sentence's own difference kept the light more often (toy cinema, development
    films and two fresh sets: unscripted state 0.744 / 0.673 / 0.675 against 0.746 / 0.664 / 0.668 for the trained
    sentence itself, place from the planned tokens the same, 0.983-0.993)."""
    nearest = nearest_in_bank(scenes, bank)
    return nearest + keep * (scenes - nearest) if keep else nearest


def unseen_scenes(scenes: torch.Tensor, bank: torch.Tensor) -> int:
    """How many rows of ``scenes [n, Dt]`` are no sentence of ``bank`` (the ones ``snap_to_bank`` moves)."""
    if scenes.shape[0] == 0:
        return 0
    return int((_distance_to_bank(scenes, bank) > SAME_SENTENCE).sum())


#: A scene sentence whose cosine to every sentence of the bank is below this is taken for a place the training films
#: never showed. Toy cinema (MiniLM): every phrasing of a toy place tried, 0.60 to 0.95 to its nearest training sentence;
#: a kitchen, a spaceship corridor, the moon, a coral reef, a train station, a French beach: 0.17 to 0.42 (an audit).
FAR_COSINE = 0.5


def far_scenes(scenes: torch.Tensor, bank: torch.Tensor, below: float = FAR_COSINE) -> list[int]:
    """The rows of ``scenes [n, Dt]`` unlike every sentence of ``bank`` (best cosine below ``below``): places the
    planner never saw, which it plans as the nearest one it knows."""
    if scenes.shape[0] == 0:
        return []
    best = _cosines(scenes.detach().float().cpu(), bank.detach().float().cpu()).amax(-1)
    return [int(i) for i in torch.nonzero(best < below).flatten()]


def _distance_to_bank(rows: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``[n]``: each row's largest coordinate difference from its nearest bank row (``SAME_SENTENCE``'s measure),
    through ``cdist``: ``[n, m]`` distances, never an ``[n, m, Dt]`` difference."""
    return torch.cdist(rows.detach().float().cpu(), bank.detach().float().cpu(), p=float("inf")).amin(-1)


__all__ = ["FAR_COSINE", "KEPT_BANKS", "MAX_SCENE_BANK", "NO_EMPTY_MESSAGE", "SNAP_EMPTY_MESSAGE", "SNAP_SCENES_MESSAGE", "TooManyScenes",
           "distinct_empty_actions", "distinct_scenes", "empty_actions", "far_scenes", "keep_banks", "movie_empty_actions",
           "movie_scenes", "nearest_in_bank", "snap_empty_actions", "snap_to_bank", "training_banks", "unseen_scenes"]
