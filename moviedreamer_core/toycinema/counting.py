"""Counting what a keyframe shows: who stands in each screen place (left, centre, right), or nobody.

The label probe (``probe.py``) says which characters are on screen, not how many figures are drawn: a keyframe
that shows Cy twice reads as "Cy", like one that shows Cy once. ``PlaceCounter`` reads a keyframe place by place
with the shipped toy identity embedder (``identity.ToyIdentityEmbedder``), so a character drawn twice, a figure
too many or a figure missing are seen; ``scores.count_scores`` turns the readings into scores.

**The places.** The world stages characters at three screen places, ``world.POSITIONS`` at ``world.POSITION_U``
(0.2, 0.5, 0.8 of the frame's width), the same for every camera (``world.py``). Each place is read through the
identity embedder's own crop window (``identity.crop_boxes``): a square as wide as the close-up camera (0.25 world
units), the feet on ``FEET_Y``, centred on the place, with no pan and no figure offset (a keyframe image does not
say them). The camera size is not read from the image: it is the keyframe plan's, i.e. the script's (a keyframe
drawn at another size is then read as if it had the script's, and usually comes out wrong).

**Which places, per camera** (from the world's staging rules, ``grammar._framing``). Two places *conflict* when
figures standing at both would overlap (their centres closer than a figure's width, ``2 * FIGURE_HALF_WIDTH``):

* ``wide`` (places 0.3 world units apart) and ``medium`` (0.15): no conflict. Every place is read on its own:
  ``classify(..., allow_nobody=True)`` of its window. Medium windows are half the frame wide and show a
  neighbour's edge, as the embedder's training crops do (it learnt "nobody" on medium shots' free places too).
* ``close_up`` (0.075 apart): the centre conflicts with both sides. The world frames one face at the centre or two
  faces at left and right (``MAX_ON_SCREEN``: at most two), and the window of a side place in a one-face close-up
  still holds half of that face (the embedder often names it), as the centre window of a two-face close-up holds
  two half faces. So a close-up is read as a whole: the scorer chooses among the *arrangements* (sets of places
  with no conflicting pair: nobody, centre, left, right, left + right) the one its windows support best.

**Choosing an arrangement.** For each window, ``s`` is its cosine to the nearest character's reference embedding
and ``n`` its cosine to the ``nobody`` direction (what ``classify`` compares). An arrangement is possible when each
of its places shows somebody (``s > n``, the place's character its nearest reference); its support is the mean,
over the places it says something about, of ``s`` for its places and of ``n`` for the places it leaves empty;
places that conflict with one of its places (they see part of that figure) say nothing. The most supported possible
arrangement wins. With no conflicts (wide, medium) this is exactly ``classify`` place by place.

**What it counts.** The number of figures is the number of occupied places. A figure drawn between two places,
or two figures crowded into one place, is read at the places' windows like any other picture: the count is the
places', not a free detector's. A faint, washed-out figure (a generated keyframe's half-drawn ghost) is often read
as nobody, so on generated keyframes extra figures are if anything undercounted.

**Measured error** on the ground-truth keyframes of 32 films from ``VALIDATION_SEED`` (629 keyframes; a seed
nothing was chosen on: the arrangement rule was chosen on the benchmark's development films, ``HELD_OUT_SEED``
9000): at 32 px 626 right (exact cast 0.995); the 3 errors are wide keyframes whose left figure, 0.03-0.04 of the
frame away from its place, was read as nobody (wide 0.990, medium and close-up 1.000; by characters on screen
0 / 1 / 2 / 3: 1.000 / 0.997 / 0.991 / 1.000); at 64 px 629 right. No extra figure, no character read twice.
Reading every place on its own, as wide shots are read, got 27 of the 69 development close-ups wrong at 32 px
(a side place naming the centre face); the arrangement rule, none of them. ``tests/core/test_toycinema_counting.py``
holds these bounds with a margin, and checks that a character drawn twice and a figure left out are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Optional, Sequence

import numpy as np

from .film import KeyframePlan
from .identity import FIGURE_HALF_WIDTH, ToyIdentityEmbedder, character_crops
from .world import CAMERAS, N_CAMERAS, N_POSITIONS, POSITION_U

#: Films of this seed validate the scorer (ground truth must be read near perfectly); nothing is chosen on them.
VALIDATION_SEED = 60000
NOBODY = -1


def conflicts(camera: int) -> frozenset[tuple[int, int]]:
    """Pairs of places ``(p, q)``, ``p < q``, whose figures would overlap under ``camera``."""
    width = CAMERAS[camera].width
    return frozenset((p, q) for p, q in combinations(range(N_POSITIONS), 2)
                     if abs(POSITION_U[p] - POSITION_U[q]) * width < 2 * FIGURE_HALF_WIDTH)


def arrangements(camera: int) -> tuple[tuple[int, ...], ...]:
    """Every set of places (sorted tuples, the empty one first) with no conflicting pair under ``camera``."""
    bad = conflicts(camera)
    out = []
    for k in range(N_POSITIONS + 1):
        for places in combinations(range(N_POSITIONS), k):
            if not any(pair in bad for pair in combinations(places, 2)):
                out.append(places)
    return tuple(out)


@dataclass(frozen=True)
class PlaceReading:
    """What a keyframe shows, place by place: ``occupants[p]`` is the character id at ``world.POSITIONS[p]`` or
    ``-1`` (nobody). ``character_cosine`` / ``nobody_cosine``: per place, its window's cosine to the nearest
    character's reference and to the ``nobody`` direction."""

    camera: int
    occupants: tuple[int, ...]
    character_cosine: tuple[float, ...] = ()
    nobody_cosine: tuple[float, ...] = ()

    @property
    def n_figures(self) -> int:
        """Figures drawn: occupied places."""
        return sum(c != NOBODY for c in self.occupants)

    @property
    def on_screen(self) -> tuple[tuple[int, int], ...]:
        """``(character id, place id)`` of each occupied place, left to right (a character may appear twice)."""
        return tuple((c, p) for p, c in enumerate(self.occupants) if c != NOBODY)

    @property
    def doubled(self) -> tuple[int, ...]:
        """Characters drawn at two places or more."""
        seen = [c for c in self.occupants if c != NOBODY]
        return tuple(sorted({c for c in seen if seen.count(c) > 1}))


def choose_arrangement(camera: int, best: Sequence[int], s: Sequence[float], n: Sequence[float]) -> tuple[int, ...]:
    """The occupants per place (``-1`` nobody) the windows support best (module docstring). ``best[p]``: the
    nearest character of place ``p``'s window, ``s[p]`` its cosine, ``n[p]`` the window's cosine to ``nobody``."""
    shows = [s[p] > n[p] for p in range(N_POSITIONS)]
    bad = conflicts(camera)
    choice, support = (), -np.inf
    for places in arrangements(camera):
        if not all(shows[p] for p in places):
            continue
        terms = []
        for p in range(N_POSITIONS):
            if p in places:
                terms.append(s[p])
            elif not any((min(p, q), max(p, q)) in bad for q in places):
                terms.append(n[p])
        value = float(np.mean(terms)) if terms else -np.inf
        if value > support:
            choice, support = places, value
    return tuple(int(best[p]) if p in choice else NOBODY for p in range(N_POSITIONS))


def place_plan(camera: int) -> KeyframePlan:
    """A keyframe plan with a (stand-in) figure at every place, no pan, no offsets: its crop boxes are the places'
    windows (``identity.crop_boxes``)."""
    if not 0 <= camera < N_CAMERAS:
        raise ValueError(f"camera id {camera} is not one of the world's {N_CAMERAS}")
    return KeyframePlan(0, int(camera), tuple((0, p, 0.0) for p in range(N_POSITIONS)), 0.0)


class PlaceCounter:
    """Reads keyframes place by place with a toy identity embedder: ``read(images, cameras)`` -> ``PlaceReading``s.

    ``references``: ``[n_characters, dim]`` identity embeddings the places are compared with (default: the
    embedder's reference portraits at 64 px, as ``classify`` uses)."""

    def __init__(self, embedder: ToyIdentityEmbedder, references: Optional[np.ndarray] = None):
        self.embedder = embedder
        self.references = embedder.reference_embeddings(64) if references is None else np.asarray(references, np.float32)
        self.nobody = embedder.nobody

    def read(self, images, cameras: Sequence[int]) -> list[PlaceReading]:
        """One reading per keyframe. ``images``: ``uint8 [N, S, S, 3]`` or a list of square ``uint8 [S, S, 3]``
        images (any sizes); ``cameras``: the camera id of each (the script's)."""
        return self.read_embedded(self.embed_places(images, cameras), cameras)

    def embed_places(self, images, cameras: Sequence[int]) -> np.ndarray:
        """``[N, places, dim]``: the embedding of each keyframe's window at each screen place (``read``'s input;
        the identity report's toy faces reuse it)."""
        images = list(images)
        cameras = [int(c) for c in cameras]
        if len(images) != len(cameras):
            raise ValueError(f"{len(images)} images for {len(cameras)} camera sizes")
        crops = [crop for image, cam in zip(images, cameras) for _, crop in character_crops(np.asarray(image), place_plan(cam))]
        if not crops:
            return np.zeros((0, N_POSITIONS, 0), np.float32)
        return self.embedder.embed_crops(np.stack(crops)).reshape(len(images), N_POSITIONS, -1)

    def read_embedded(self, e: np.ndarray, cameras: Sequence[int]) -> list[PlaceReading]:
        """The readings of place embeddings ``e`` (``embed_places``) of keyframes at ``cameras``."""
        if not len(e):
            return []
        to_chars = e @ self.references.T  # [N, places, characters]
        to_nobody = e @ self.nobody  # [N, places]
        best = to_chars.argmax(-1)
        s = to_chars.max(-1)
        out = []
        for i, cam in enumerate(int(c) for c in cameras):
            occupants = choose_arrangement(cam, best[i], s[i], to_nobody[i])
            out.append(PlaceReading(cam, occupants, tuple(float(x) for x in s[i]), tuple(float(x) for x in to_nobody[i])))
        return out

    def read_films(self, films, size: int = 32) -> list[PlaceReading]:
        """Readings of the ground-truth keyframes of ``films`` rendered at ``size`` (the scorer's own check)."""
        images = [im for f in films for im in f.images(size)]
        return self.read(images, [k.camera for f in films for k in f.keyframes])
