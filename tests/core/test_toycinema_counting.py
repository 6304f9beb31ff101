"""The count-aware scorer (``toycinema/counting.py``, ``scores.count_scores``): which places each camera reads, a
character drawn twice and a figure left out are counted as wrong, and ground-truth keyframes are read near
perfectly.

Bounds. Measured with the shipped identity embedder on the ground-truth keyframes of 32 films from
``counting.VALIDATION_SEED`` (823 keyframes: 415 wide, 284 medium, 124 close-ups; 19 / 308 / 303 / 193 with 0 / 1 /
2 / 3 characters on screen), a seed nothing was chosen on, in the world where films have per-film looks and hats
(issue #21), with the identity embedder retrained on it (grey light that desaturates): at 32 px, exact cast 816 of 823
(0.991); the 7 errors are all wide keyframes (408 of 415: 0.983), medium and close-up 1.000; no extra figure, two
keyframes with a character read twice, four with a figure read as nobody, one with a character read as another. At
64 px: 823 of 823. (Before the hats: 626 of 629 at 32 px, 629 of 629 at 64 px.) The asserts leave a margin: exact cast
>= 0.98 overall and >= 0.97 on every camera at 32 px, >= 0.99 at 64 px, extra figures and doubled characters at most
0.005 (4 keyframes in 823).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moviedreamer_core.toycinema import FrameLabel, KeyframePlan, generate_films, render_keyframe
from moviedreamer_core.toycinema.counting import VALIDATION_SEED, PlaceCounter, arrangements, conflicts
from moviedreamer_core.toycinema.identity import ToyIdentityEmbedder
from moviedreamer_core.toycinema.scores import count_scores, keyframe_outcome, places_of
from moviedreamer_core.toycinema.world import N_CHARACTERS, N_LOCATIONS, camera_id

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WEIGHTS = Path(__file__).resolve().parents[2] / "moviedreamer_core" / "toycinema" / "weights"
WIDE, MEDIUM, CLOSE_UP = camera_id("wide"), camera_id("medium"), camera_id("close_up")
LEFT, CENTRE, RIGHT = 0, 1, 2


@pytest.fixture(scope="module")
def counter() -> PlaceCounter:
    return PlaceCounter(ToyIdentityEmbedder.load(str(WEIGHTS / "toycinema_identity.safetensors")))


def test_each_camera_reads_the_places_its_figures_can_hold():
    assert conflicts(WIDE) == conflicts(MEDIUM) == frozenset()
    assert len(arrangements(WIDE)) == len(arrangements(MEDIUM)) == 8  # every subset of the three places
    # a close-up's centre figure would overlap a side figure: one face at the centre or two at the sides
    assert conflicts(CLOSE_UP) == {(LEFT, CENTRE), (CENTRE, RIGHT)}
    assert arrangements(CLOSE_UP) == ((), (LEFT,), (CENTRE,), (RIGHT,), (LEFT, RIGHT))


def test_outcomes_and_shares_of_hand_made_readings():
    label = FrameLabel(0, WIDE, ((1, LEFT), (4, RIGHT)))
    assert places_of(label) == (1, -1, 4)
    assert keyframe_outcome((1, -1, 4), label) == {"exact_cast": True, "count_right": True, "extra_figures": False,
                                                   "missing_figures": False, "doubled": False}
    twice = keyframe_outcome((1, 1, 4), label)
    assert twice["extra_figures"] and twice["doubled"] and not twice["exact_cast"]
    swapped = keyframe_outcome((4, -1, 1), label)  # right characters, right count, wrong places
    assert swapped["count_right"] and not swapped["exact_cast"]
    assert keyframe_outcome((1, -1, -1), label)["missing_figures"]
    labels = [label, FrameLabel(0, CLOSE_UP, ((2, CENTRE),)), FrameLabel(1, WIDE, ())]
    s = count_scores([(1, 1, 4), (-1, 2, -1), (-1, -1, -1)], labels)
    assert s["exact_cast"] == pytest.approx(2 / 3) and s["extra_figures"] == pytest.approx(1 / 3)
    assert s["extra_figures_wide"] == 0.5 and s["by_camera"]["close_up"]["exact_cast"] == 1.0
    assert s["by_count"]["2"]["doubled"] == 1.0 and s["by_count"]["0"]["keyframes"] == 1
    assert s["count_confusion"] == {"wide": {"2 -> 3": 1}}
    with pytest.raises(ValueError):
        count_scores([(1, -1)], [label])


def _plans(camera: int, places: tuple[int, ...], n: int = 12):
    """Plans with one figure at each of ``places``, characters and locations varied, small offsets and pans."""
    rng = np.random.default_rng(camera * 10 + len(places))
    for i in range(n):
        chars = rng.choice(N_CHARACTERS, size=len(places), replace=False)
        yield KeyframePlan(int(rng.integers(N_LOCATIONS)), camera,
                           tuple((int(c), p, float(rng.uniform(-0.02, 0.02))) for c, p in zip(chars, places)),
                           float(rng.uniform(-0.02, 0.02)))


# The staged places of one and two characters per camera (grammar._framing: close-ups frame them at the centre,
# or at left and right; wide and medium shots at any places), and where a second copy of the first one is drawn.
CASES = [(WIDE, (LEFT,), RIGHT), (WIDE, (CENTRE,), LEFT), (WIDE, (RIGHT,), CENTRE), (MEDIUM, (CENTRE,), LEFT),
         (MEDIUM, (LEFT,), RIGHT), (CLOSE_UP, (LEFT, RIGHT), None), (WIDE, (LEFT, RIGHT), CENTRE),
         (MEDIUM, (LEFT, RIGHT), CENTRE)]


@pytest.mark.parametrize("size", [32, 64])
def test_a_character_drawn_twice_is_counted_as_an_extra_figure(counter, size):
    images, cameras, labels = [], [], []
    for camera, places, copy in CASES:
        for plan in _plans(camera, places):
            c, p, dx = plan.figures[0]
            if copy is None:  # close-up: the script's one face at the centre, drawn at left and right instead
                label = FrameLabel(plan.location, camera, ((c, CENTRE),))
                drawn = KeyframePlan(plan.location, camera, ((c, LEFT, dx), (c, RIGHT, -dx)), plan.pan)
            else:
                label = plan.label
                drawn = KeyframePlan(plan.location, camera, plan.figures + ((c, copy, 0.0),), plan.pan)
            images.append(render_keyframe(drawn, size))
            cameras.append(camera)
            labels.append(label)
    readings = counter.read(images, cameras)
    outcomes = [keyframe_outcome(r, t) for r, t in zip(readings, labels)]
    assert all(o["doubled"] and o["extra_figures"] and not o["exact_cast"] for o in outcomes), [
        (t.describe(), r.occupants) for r, t, o in zip(readings, labels, outcomes) if not o["doubled"]]
    s = count_scores(readings, labels)
    assert s["exact_cast"] == 0.0 and s["doubled"] == 1.0 and s["extra_figures_wide"] == 1.0


@pytest.mark.parametrize("size", [32, 64])
def test_a_figure_left_out_is_counted_as_missing(counter, size):
    images, cameras, labels = [], [], []
    for camera, places in [(WIDE, (LEFT, CENTRE)), (WIDE, (CENTRE, RIGHT)), (WIDE, (LEFT, CENTRE, RIGHT)),
                           (MEDIUM, (LEFT, RIGHT)), (MEDIUM, (LEFT, CENTRE, RIGHT)), (CLOSE_UP, (LEFT, RIGHT)),
                           (CLOSE_UP, (CENTRE,))]:
        for i, plan in enumerate(_plans(camera, places)):
            gone = i % len(places)
            drawn = KeyframePlan(plan.location, camera, plan.figures[:gone] + plan.figures[gone + 1:], plan.pan)
            images.append(render_keyframe(drawn, size))
            cameras.append(camera)
            labels.append(plan.label)
    readings = counter.read(images, cameras)
    for r, t in zip(readings, labels):
        o = keyframe_outcome(r, t)
        assert o["missing_figures"] and not o["exact_cast"] and not o["doubled"], (t.describe(), r.occupants)
        assert r.n_figures == len(t.on_screen) - 1
    # the figures left standing are read where they stand, except a close-up's lone side face (no such framing)
    kept = [(r, t) for r, t in zip(readings, labels) if t.camera != CLOSE_UP]
    assert all(set(r.on_screen) <= set(t.on_screen) for r, t in kept)


@pytest.mark.parametrize("size,bound", [(32, 0.98), (64, 0.99)])
def test_ground_truth_keyframes_are_read_near_perfectly(counter, size, bound):
    """Films of the validation seed (nothing was chosen on them); the module docstring has the measured figures."""
    films = generate_films(VALIDATION_SEED, 32)
    labels = [label for film in films for label in film.labels()]
    s = count_scores(counter.read_films(films, size), labels)
    assert s["keyframes"] == 823 and set(s["by_count"]) == {"0", "1", "2", "3"}
    assert s["exact_cast"] >= bound, s
    assert all(part["exact_cast"] >= bound - 0.01 for part in s["by_camera"].values()), s["by_camera"]
    assert s["extra_figures"] <= 0.005 and s["doubled"] <= 0.005, s
