"""Which shots and keyframes each participant of a distributed run makes.

A shot can be made on its own once its keyframes exist, with two exceptions that tie shots together:

* a shot that begins with a ``dissolve`` or a ``wipe`` blends from the previous shot's last frame, as decoded
  from that shot's file (``animate/movie.py``);
* a shot followed by a ``continuous`` one lands on that shot's first keyframe (Wan's first-last-frame mode).

So shots are grouped into *chains* (a shot joins the previous shot's chain when it begins with a dissolve, a
wipe or a continuous transition) and each participant gets whole chains: every keyframe and previous frame a
participant's shots need is made by that same participant, and nobody waits for anybody. Chains are dealt out
in order, in contiguous runs of about equal cost, so the split depends only on the script, the list of
participants and the cost of a second of video: every participant computes the same split on its own.

The cost of a shot is its keyframes plus its seconds of video times ``second_cost``, the price of a second of
video in keyframes. The on-prompt step (``prompt.py``) chooses it from how ShotAnimate animates: the animatic
costs little per second (``ANIMATIC_SECOND_COST``: measured on the toy movie, a keyframe took 0.53 s to render and a
second of animatic 0.05 s), an image-to-video model a lot (``VIDEO_MODEL_SECOND_COST``, an estimate: a second of
Wan 2.1 at 480p takes several times an SDXL keyframe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

#: Transitions that bind a shot to the one before it (see the module docstring).
JOINING = frozenset({"dissolve", "wipe", "continuous"})
#: Cost of one second of video, in keyframes, when the chains are dealt out (see the module docstring).
ANIMATIC_SECOND_COST = 0.1
VIDEO_MODEL_SECOND_COST = 8.0
SECOND_COST = 1.0


@dataclass(frozen=True)
class ShotOutline:
    """What the split needs to know of a shot."""

    n_keyframes: int
    duration: float
    transition: str = "cut"

    def cost(self, second_cost: float = SECOND_COST) -> float:
        return self.n_keyframes + float(self.duration) * second_cost


@dataclass(frozen=True)
class Share:
    """One participant's work: shot indices and the movie-wide indices of their keyframes, in order."""

    shots: tuple[int, ...]
    keyframes: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(self.shots)


def outlines_of_script(script) -> list[ShotOutline]:
    """``ShotOutline`` of every shot of a ``script.schema.Script``."""
    return [ShotOutline(s.n_keyframes, float(s.duration), s.transition.value) for s in script.shots]


def shot_chains(shots: Sequence[ShotOutline]) -> list[list[int]]:
    """Shot indices grouped into chains that one participant must make together, in order."""
    chains: list[list[int]] = []
    for i, shot in enumerate(shots):
        if i and shot.transition in JOINING:
            chains[-1].append(i)
        else:
            chains.append([i])
    return chains


def split_shots(shots: Sequence[ShotOutline], n_participants: int, second_cost: float = SECOND_COST) -> list[Share]:
    """The shares of ``n_participants``, in participant order: contiguous runs of whole chains of about equal
    cost. A participant may get nothing (fewer chains than participants)."""
    if n_participants < 1:
        raise ValueError("a split needs at least one participant")
    chains = shot_chains(shots)
    costs = [sum(shots[i].cost(second_cost) for i in chain) for chain in chains]
    total = sum(costs)
    bounds, acc, start = [], 0.0, 0
    for j in range(n_participants - 1):
        target = total * (j + 1) / n_participants
        end = start
        # take chains while that brings the running cost closer to this participant's target
        while end < len(chains) and abs(acc + costs[end] - target) <= abs(acc - target):
            acc += costs[end]
            end += 1
        bounds.append((start, end))
        start = end
    bounds.append((start, len(chains)))
    first_keyframe, k = [], 0
    for shot in shots:
        first_keyframe.append(k)
        k += shot.n_keyframes
    shares = []
    for a, b in bounds:
        idx = tuple(i for chain in chains[a:b] for i in chain)
        kf = tuple(first_keyframe[i] + j for i in idx for j in range(shots[i].n_keyframes))
        shares.append(Share(idx, kf))
    return shares


def share_of(shots: Sequence[ShotOutline], participation) -> Share:
    """This participant's share (an empty one for a master that only orchestrates)."""
    index = participation.index
    if index is None:
        return Share((), ())
    return split_shots(shots, len(participation.participants), participation.second_cost)[index]
