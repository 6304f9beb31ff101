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
"""

from __future__ import annotations

from typing import Iterable

import torch
from safetensors import safe_open

from ..embeds import SEGMENTS

#: Most distinct training scene sentences a planner keeps (1.5 MB of float32 at 384 dimensions).
MAX_SCENE_BANK = 1024
#: Two embeddings of one sentence, encoded in different batches, may differ in the last bits (padding).
SAME_SENTENCE = 1e-4
SCENE = SEGMENTS.index("scene")

#: What both trainers say when they keep the bank.
SNAP_SCENES_MESSAGE = ("planner.snap_scenes: the planner keeps the {n} distinct scene sentences of its training films "
                       "and plans each script's scene as the nearest of them")


class TooManyScenes(ValueError):
    """More distinct training scene sentences than ``MAX_SCENE_BANK``."""


def distinct_scenes(per_film: Iterable[torch.Tensor], limit: int = MAX_SCENE_BANK) -> torch.Tensor:
    """The distinct rows ``[n, Dt]`` of each film's scene embeddings (``per_film`` yields ``[n_kf, Dt]``), in the order
    first seen; rows within ``SAME_SENTENCE`` of a kept one are the same sentence. ``TooManyScenes`` past ``limit``."""
    kept = None
    for rows in per_film:
        rows = rows.detach().float().cpu().reshape(-1, rows.shape[-1])
        if kept is not None and len(rows):  # a film's sentences the bank holds already, all at once (most of them)
            rows = rows[_distance_to_bank(rows, kept) > SAME_SENTENCE]
        for row in rows:
            if kept is not None and float(_distance_to_bank(row[None], kept)[0]) <= SAME_SENTENCE:
                continue
            if kept is not None and len(kept) >= limit:
                raise TooManyScenes(f"planner.snap_scenes: the training films have more than {limit} different scene "
                                    "sentences; snapping is for a closed world of a few places (set "
                                    "planner.snap_scenes=false)")
            kept = row[None] if kept is None else torch.cat([kept, row[None]])
    if kept is None:
        raise TooManyScenes("planner.snap_scenes: the training films have no keyframes")
    return kept


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


__all__ = ["FAR_COSINE", "MAX_SCENE_BANK", "SNAP_SCENES_MESSAGE", "TooManyScenes", "distinct_scenes", "far_scenes",
           "movie_scenes", "nearest_in_bank", "snap_to_bank", "unseen_scenes"]
