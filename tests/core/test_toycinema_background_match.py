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


def test_an_empty_keyframe_is_read_at_its_camera_and_place_without_being_told_them():
    """The probe reads every empty ground-truth keyframe as a wide shot (it learnt the camera from the figures' size),
    so an empty close-up drawn wide looked right to it. ``empty_framing`` reads the camera and the place of a keyframe
    that shows nobody: on ground truth at every camera, place and light, at pans between the grammar's, it is right
    every time, and a close-up drawn wide reads as wide."""
    from moviedreamer_core.toycinema.background_match import empty_framing
    from moviedreamer_core.toycinema.film import KeyframePlan
    from moviedreamer_core.toycinema.world import CAMERAS, N_CAMERAS, N_PLACE_LOOKS

    rng = np.random.default_rng(7)
    plans = [KeyframePlan(location, camera, (), float(rng.uniform(-0.03, 0.03)) * CAMERAS[camera].width, look)
             for camera in range(N_CAMERAS) for location in range(N_LOCATIONS) for look in range(N_PLACE_LOOKS)]
    images = [render_keyframe(plan, 32) for plan in plans]
    readings = [empty_framing(image) for image in images]
    assert readings == [(plan.camera, plan.location) for plan in plans]
    wide = [empty_framing(render_keyframe(dataclasses.replace(plan, camera=0, pan=0.0), 32)) for plan in plans[-6:]]
    assert wide == [(0, plan.location) for plan in plans[-6:]]


def test_a_picture_with_a_figure_closer_than_wide_is_far_from_every_empty_background():
    """``nearest_empty``'s distance tells a place from a place with someone in it (the probe frames only pictures within
    ``EMPTY_DISTANCE`` of an empty background by it): every ground-truth medium shot and close-up with figures of a few
    films lies beyond it, every empty keyframe at any camera within it (exactly on a background of the bank or between
    two of its pans)."""
    from moviedreamer_core.toycinema.background_match import EMPTY_DISTANCE, nearest_empty
    from moviedreamer_core.toycinema.film import KeyframePlan
    from moviedreamer_core.toycinema.world import CAMERAS, N_CAMERAS

    films = generate_films(31, 6)
    closer = [(plan, image) for film in films for plan, image in zip(film.keyframes, film.images(32))
              if plan.figures and plan.camera != 0]
    assert len(closer) > 40
    assert min(nearest_empty(image)[2] for _, image in closer) > EMPTY_DISTANCE
    rng = np.random.default_rng(3)
    empty = [render_keyframe(KeyframePlan(location, camera, (), float(rng.uniform(-0.03, 0.03)) * CAMERAS[camera].width,
                                          look), 32) for camera in range(N_CAMERAS) for location in range(N_LOCATIONS)
             for look in (0, 2)]
    assert max(nearest_empty(image)[2] for image in empty) < EMPTY_DISTANCE / 5
