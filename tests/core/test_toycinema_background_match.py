"""The background match (``toycinema.background_match``): the place of a keyframe read as its nearest ground-truth
background. It must read ground truth right and follow what is drawn, not what the plan says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moviedreamer_core.toycinema import generate_films
from moviedreamer_core.toycinema.background_match import background_reading, background_scores
from moviedreamer_core.toycinema.render import render_keyframe
from moviedreamer_core.toycinema.world import N_LOCATIONS


@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_reads_its_place_and_light(size):
    films = generate_films(4242, 3)
    plans = [k for f in films for k in f.keyframes]
    images = [im for f in films for im in f.images(size)]
    scores = background_scores(images, plans)
    assert scores["location_background"] == 1.0 and scores["look_background"] >= 0.97, scores


def test_it_reads_what_is_drawn_not_what_the_plan_says():
    films = generate_films(4243, 2)
    moved = 0
    for plan in [k for f in films for k in f.keyframes][:24]:
        other = dataclasses.replace(plan, location=(plan.location + 1) % N_LOCATIONS)
        image = render_keyframe(other, 32)  # the plan's figures, camera and light, at another place
        moved += background_reading(image, plan)[0] == other.location
        # a colour cast of the kind the decoder makes does not move the place
        cast = np.clip(render_keyframe(plan, 32).astype(np.int16) + np.array([-12, 10, 8]), 0, 255).astype(np.uint8)
        assert background_reading(cast, plan)[0] == plan.location
    assert moved == 24
    with pytest.raises(ValueError, match="images for"):
        background_scores([], [films[0].keyframes[0]])
