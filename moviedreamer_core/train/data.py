"""The planner dataset (planner/train.py's format), its train/val split, and a stateless, sharded sampler.

**Sampler.** The training stream is a sequence of *positions* 0, 1, 2, ...; position ``p`` is film
``perm_e[p mod n]`` of epoch ``e = p div n`` (``perm_e`` a permutation seeded with (seed, e)), cut to a window
chosen by a generator seeded with (seed, p), and trained with regulariser randomness from another generator
seeded with (seed, p). Optimiser step ``s`` takes positions ``s*B .. s*B+B-1`` (``B`` the global batch);
micro-step ``m`` of process ``r`` takes its own contiguous slice of those. Everything about a sample depends on
its position alone, so:

* the same global batch gives the same samples on 1 or 64 processes (only the split differs);
* the whole sampler state is one number, the samples seen (saved as epoch, step and samples in the
  checkpoint's ``trainer_state.json``), and a resumed run continues the exact stream.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from typing import Optional

import torch
from safetensors import safe_open

from ..planner.inputs import Story
from ..planner.movie_checks import check_movie_header
from ..planner.train import load_movie, read_index
from ..spaces import SPACE_KEYS
from .config import ConfigError, DataSection


def derive(*parts) -> int:
    """A 63-bit seed from any parts (stable across processes, machines and Python hash seeds)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class MovieSet:
    """Films of a dataset folder, loaded on demand (and kept in memory when ``cache``)."""

    def __init__(self, folder: str, names: list[str], cache: bool = True, spaces: Optional[dict] = None):
        self.folder, self.names, self.cache, self.spaces = folder, list(names), cache, spaces
        self._mem: dict[int, Story] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Story:
        if i in self._mem:
            return self._mem[i]
        story, _ = load_movie(os.path.join(self.folder, self.names[i]), self.spaces)
        if story.tokens is None:
            raise ConfigError(f"{self.names[i]}: a training film needs its keyframes' tokens")
        if self.cache:
            self._mem[i] = story
        return story

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()[:16]


@dataclass
class Dataset:
    train: MovieSet
    val: MovieSet
    spaces: dict


def open_dataset(cfg: DataSection, seed: int) -> Dataset:
    """Read ``index.json`` and split it: ``val_movies`` (names as in the index) or a seeded ``val_fraction``."""
    index_path = os.path.join(cfg.path, "index.json")
    try:
        index = read_index(cfg.path)
    except ValueError as e:
        raise ConfigError(f"data.path: {e}") from None
    movies = list(index["movies"])
    spaces = {k: index[k] for k in SPACE_KEYS}
    if cfg.val_movies:
        if not all(isinstance(m, str) for m in cfg.val_movies):
            raise ConfigError("data.val_movies: must be a list of movie names as index.json lists them")
        unknown = sorted(set(cfg.val_movies) - set(movies))
        if unknown:
            raise ConfigError(f"data.val_movies: not in {index_path}: {unknown[:5]}")
        held = set(cfg.val_movies)
    elif cfg.val_fraction > 0:
        order = torch.randperm(len(movies), generator=torch.Generator().manual_seed(derive(seed, "val-split")))
        held = {movies[int(i)] for i in order[:max(1, round(cfg.val_fraction * len(movies)))]}
    else:
        held = set()
    for m in movies:  # every film's header before the first step (films are read on demand, maybe hours later)
        check_movie_header(os.path.join(cfg.path, m), spaces)
    train = [m for m in movies if m not in held]
    if not train:
        how = ("data.val_movies names every film" if cfg.val_movies else
               f"data.val_fraction {cfg.val_fraction} holds out at least one film")
        raise ConfigError(f"data: no training films left in {cfg.path} ({len(movies)} film{'s' if len(movies) != 1 else ''}): "
                          f"{how}; set data.val_fraction=0 (no validation) or add films")
    return Dataset(MovieSet(cfg.path, train, cfg.cache, spaces),
                   MovieSet(cfg.path, [m for m in movies if m in held], cfg.cache, spaces), spaces)


class StreamSampler:
    """Positions to (window, generator) pairs, as described in the module docstring."""

    def __init__(self, movies: MovieSet, *, seed: int, max_keyframes: int):
        self.movies, self.seed, self.max_keyframes = movies, seed, max_keyframes
        self._perm: tuple[int, torch.Tensor] = (-1, torch.empty(0))

    def epoch_of(self, position: int) -> int:
        return position // len(self.movies)

    def _film(self, position: int) -> int:
        epoch, n = self.epoch_of(position), len(self.movies)
        if self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(n, generator=torch.Generator().manual_seed(derive(self.seed, "epoch", epoch))))
        return int(self._perm[1][position % n])

    def sample(self, position: int) -> tuple[Story, torch.Generator]:
        story = self.movies[self._film(position)]
        rng = random.Random(derive(self.seed, "window", position))
        n = story.n_keyframes
        if n > self.max_keyframes:
            start = rng.randrange(0, n - self.max_keyframes + 1)
            story = story.window(start, start + self.max_keyframes)
        return story, torch.Generator().manual_seed(derive(self.seed, "regularisers", position))

    def micro_batch(self, step: int, micro: int, rank: int, *, global_batch: int, micro_batch: int,
                    num_processes: int) -> tuple[list[Story], list[torch.Generator]]:
        first = step * global_batch + (micro * num_processes + rank) * micro_batch
        pairs = [self.sample(p) for p in range(first, first + micro_batch)]
        return [s for s, _ in pairs], [g for _, g in pairs]


def eval_windows(movies: MovieSet, max_keyframes: int) -> list[tuple[int, int, int]]:
    """Held-out films cut into consecutive windows of at most ``max_keyframes``: (film, start, stop)."""
    out = []
    for i in range(len(movies)):
        n = _n_keyframes(movies, i)
        out += [(i, a, min(n, a + max_keyframes)) for a in range(0, n, max_keyframes)]
    return out


def _n_keyframes(movies: MovieSet, i: int) -> int:
    if i in movies._mem:
        return movies._mem[i].n_keyframes
    with safe_open(os.path.join(movies.folder, movies.names[i]), framework="pt") as f:
        return int(f.get_slice("keyframe_text").get_shape()[0])


def token_moments(movies: MovieSet, rank: int, num_processes: int) -> torch.Tensor:
    """This process's share of the token statistics: ``[3, D]`` float64 rows (count, sum, sum of squares),
    to be summed over processes (each reads 1/P of the films)."""
    rows: Optional[torch.Tensor] = None
    for i in range(rank, len(movies), num_processes):
        t = movies[i].tokens.reshape(-1, movies[i].tokens.shape[-1]).double()
        part = torch.stack([torch.full((t.shape[1],), float(t.shape[0]), dtype=torch.float64), t.sum(0), (t * t).sum(0)])
        rows = part if rows is None else rows + part
    if rows is None:
        dim = movies[0].tokens.shape[-1]
        rows = torch.zeros(3, dim, dtype=torch.float64)
    return rows


def stats_from_moments(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) std per dimension, as ``KeyframePlanner.set_token_stats`` computes them."""
    n, s, ss = m[0], m[1], m[2]
    mean = s / n
    var = ((ss - n * mean * mean) / (n - 1).clamp_min(1)).clamp_min(0)
    std = torch.where(n > 1, var.sqrt().clamp_min(1e-4), torch.ones_like(var))
    return mean.float(), std.float()
