"""The toy cinema: determinism, story continuity, scripts, labels against pixels, and the label probe.

Probe thresholds. Measured on this machine (2 CPU cores) for a probe trained 400 steps on 160 films (30 s), scored
on 16 held-out films drawn from another seed, at 32 and 64 px, in the world with per-film lights and hats: training
seed 0 (the one used here) location 0.99, camera 1.0, character F1 0.986, exact set 0.949, position 0.994. (On 40
films, as before the grey light desaturated, it read the lights at only 0.90: every (place, light, camera)
combination needs enough examples; the shipped probe trains on 240 films.) Earlier, on the world without lights and
hats, 40 films: seed 0 location 0.997, exact set 0.984; training seeds 1-3: location 1.0, camera 0.991-1.0,
character F1 0.936-0.997, exact set 0.842-0.991.
Chance levels on the same held-out labels, i.e. the best constant guess (``scores.trivial_scores``):
location about 0.27 (six places), camera about 0.52 (half of all keyframes are wide), character-presence
F1 about 0.39 (best of "everybody" and "the most common set"), exact character set about 0.14. The test
asserts location >= 0.95, camera >= 0.95, character F1 >= 0.90, exact set >= 0.75, position >= 0.90,
and each at least 0.3 above the chance level it measures.
"""

from __future__ import annotations

import numpy as np
import pytest

from moviedreamer_core.script import load_script
from moviedreamer_core.toycinema import (
    CAMERAS,
    CHARACTERS,
    KeyframePlan,
    generate_film,
    generate_films,
    render_keyframe,
    render_reference,
    score_labels,
    script_text,
    trivial_scores,
    write_film,
)
from moviedreamer_core.toycinema.grammar import MIN_SCENE_SHOTS, RETURN_AFTER_SHOTS
from moviedreamer_core.toycinema.world import NEUTRAL, N_CHARACTERS, camera_id

FILMS = generate_films(2024, 24)


def colour_pixels(image: np.ndarray, rgb, tol: int = 6) -> np.ndarray:
    return np.abs(image.astype(int) - np.asarray(rgb)).max(-1) <= tol


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_film_other_seed_differs():
    a, b, c = generate_film(7), generate_film(7), generate_film(8)
    assert a.shots == b.shots and a.cast == b.cast
    for size in (32, 64):
        assert a.images(size).dtype == np.uint8 and a.images(size).shape == (a.n_keyframes, size, size, 3)
        assert a.images(size).tobytes() == b.images(size).tobytes()
    assert script_text(a) == script_text(b)
    assert a.shots != c.shots and script_text(a) != script_text(c)
    n = min(a.n_keyframes, c.n_keyframes)
    assert a.images(32)[:n].tobytes() != c.images(32)[:n].tobytes()
    again = generate_films(2024, 3)
    assert [f.seed for f in again] == [f.seed for f in FILMS[:3]]
    assert all(x.images(32).tobytes() == y.images(32).tobytes() for x, y in zip(again, FILMS[:3]))


# ------------------------------------------------------------------------------------------- continuity


def test_locations_hold_for_several_shots():
    for film in FILMS:
        runs, current = [], None
        for shot in film.shots:
            if shot.location != current:
                runs.append(0)
                current = shot.location
            runs[-1] += 1
        assert len(runs) >= 2, "a 12-shot film has at least two scenes"
        assert min(runs) >= MIN_SCENE_SHOTS, (film.seed, runs)
    # Every scene opens with a wide establishing shot.
    assert all(s.event == "establish" and s.camera == camera_id("wide")
               for f in FILMS for i, s in enumerate(f.shots) if i == 0 or f.shots[i - 1].location != s.location)


def test_characters_enter_leave_and_come_back():
    films_with_comeback = 0
    for film in FILMS:
        seen: set[int] = set()
        gone: dict[int, int] = {}  # character -> index of the shot it left in
        comeback = False
        for shot in film.shots:
            if shot.event == "enter":
                assert shot.subject not in seen, "'enter' is a first appearance"
            if shot.event == "return":
                assert shot.subject in seen
            for c in shot.characters:
                if c in gone:
                    # Back only by a 'return' after some shots away, or with a new scene.
                    assert shot.event == "establish" or (shot.event == "return" and shot.subject == c)
                    assert shot.event == "establish" or shot.index - gone[c] > RETURN_AFTER_SHOTS
                    comeback = True
                    del gone[c]
            seen.update(shot.characters)
            if shot.event == "leave":
                assert shot.subject in shot.characters, "the one who leaves is shown leaving"
                gone[shot.subject] = shot.index
        films_with_comeback += comeback
    assert films_with_comeback >= 5, films_with_comeback


def test_wide_shots_keep_stage_positions_within_a_scene():
    wide = camera_id("wide")
    for film in FILMS:
        slots: dict[int, int] = {}
        location = None
        for shot in film.shots:
            if shot.location != location:
                slots, location = {}, shot.location
            if shot.camera != wide:
                continue
            for c, p in shot.keyframes[0].label.on_screen:
                if c in slots and shot.event not in ("return", "enter"):
                    assert slots[c] == p, (film.seed, shot.shot_id)
                slots[c] = p


# --------------------------------------------------------------------------------------------- scripts


def test_every_script_validates_and_matches_the_labels():
    for film in FILMS:
        script = load_script(script_text(film, "indices"), image_count=len(film.cast))
        assert script.n_keyframes == film.n_keyframes == len(film.labels())
        names = [c.name for c in script.characters]
        assert names == [CHARACTERS[c].name for c in film.cast]
        for spec, label in zip(script.keyframes(), film.labels()):
            assert {film.cast[i] for i in spec.characters} == set(label.characters)
            assert spec.camera == CAMERAS[label.camera].name


def test_write_film_writes_references_the_script_points_at(tmp_path):
    from moviedreamer_core.script.references import load_image_file

    film = FILMS[0]
    text = write_film(film, str(tmp_path), keyframes=32)
    script = load_script(text, input_dir=str(tmp_path))
    assert script.n_keyframes == film.n_keyframes
    for ch, c in zip(script.characters, film.cast):
        (ref,) = ch.references
        image = load_image_file(str(tmp_path / ref))
        assert image.shape == (64, 64, 3)
        assert np.array_equal(image, render_reference(c, 64))
    assert len(list((tmp_path / "keyframes").glob("*.png"))) == film.n_keyframes
    assert (tmp_path / "script.yaml").read_text() == text


# ---------------------------------------------------------------------------------- labels against pixels


def test_labelled_characters_appear_in_their_colour_and_no_one_else_does():
    for film in FILMS[:12]:
        for size in (32, 64):
            for image, label in zip(film.images(size), film.labels()):
                for c, look in enumerate(CHARACTERS):
                    n = int(colour_pixels(image, look.body).sum())
                    if c in label.characters:
                        assert n >= 2, (film.seed, size, label.describe(), look.name)
                    else:
                        assert n == 0, (film.seed, size, label.describe(), look.name)


def test_positions_and_camera_scale_show_in_pixels():
    look = CHARACTERS[1]
    widths = []
    for cam in range(len(CAMERAS)):
        for pos in range(3):
            image = render_keyframe(KeyframePlan(0, cam, ((1, pos, 0.0),)), 64)
            cols = np.flatnonzero(colour_pixels(image, look.body).any(0))
            centre = cols.mean() / 64
            assert abs(centre - (0.2, 0.5, 0.8)[pos]) < 0.05, (cam, pos, centre)
            if pos == 1:
                widths.append(len(cols))
    # Each closer camera halves the window, so figures are about twice as wide.
    assert 1.6 < widths[1] / widths[0] < 2.4 and 1.6 < widths[2] / widths[1] < 2.4, widths


def test_figure_boxes_hold_every_pixel_a_figure_changes_and_not_much_more():
    import dataclasses

    from moviedreamer_core.toycinema.render import figure_boxes

    cover = {}
    for film in FILMS[:8]:
        for plan in film.keyframes:
            for size in (32, 64):
                boxes = figure_boxes(plan, size)
                drawn = render_keyframe(plan, size).astype(int)
                background = render_keyframe(dataclasses.replace(plan, figures=(), hats=()), size)
                changed = np.abs(drawn - background).sum(-1) > 0
                assert not (changed & ~boxes).any(), (film.seed, plan)
                assert boxes.any() == bool(plan.figures)
                if plan.figures and size == 32:
                    cover.setdefault(plan.camera, []).append(changed.sum() / boxes.sum())
    # the boxes are tight: most of a box is figure (a wide shot's 2-3 pixel figures less so, at the box's rounded edges)
    assert all(np.mean(v) > 0.4 for v in cover.values()), {k: np.mean(v) for k, v in cover.items()}


def test_sizes_agree_and_references_are_alone_on_neutral_grey():
    film = FILMS[1]
    small = film.images(32).astype(float)
    large = film.images(64).astype(float).reshape(-1, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(small - large).mean() < 3.0
    for c, look in enumerate(CHARACTERS):
        ref = render_reference(c, 64)
        assert (ref[0, 0] == NEUTRAL).all() and (ref[0, -1] == NEUTRAL).all()
        assert colour_pixels(ref, look.body).sum() > 200
        assert all(colour_pixels(ref, other.body).sum() == 0 for o, other in enumerate(CHARACTERS) if o != c)


# ------------------------------------------------------------------------------------------------ probe


@pytest.fixture(scope="module")
def probe():
    from moviedreamer_core.toycinema.probe import train_probe

    return train_probe(seed=0, n_films=160, steps=400)


def test_probe_reads_held_out_films(probe):
    from moviedreamer_core.toycinema.probe import frames_and_labels

    images, labels = frames_and_labels(777, 16)
    chance = trivial_scores(labels, N_CHARACTERS)
    for size in (32, 64):
        if size == 64:
            images = np.concatenate([f.images(64) for f in generate_films(777, 16)])
        got = score_labels(probe.predict(images), labels)
        floors = {"location_accuracy": 0.95, "camera_accuracy": 0.95, "character_f1": 0.90,
                  "character_set_match": 0.75, "position_accuracy": 0.90}
        for key, floor in floors.items():
            assert got[key] >= floor, (size, key, got, chance)
            if key in chance:
                assert got[key] >= chance[key] + 0.3, (size, key, got, chance)


def test_probe_reads_an_empty_keyframe_by_its_background_at_every_camera(probe):
    """The network learns the camera from the figures' size (the shipped one reads every empty ground-truth keyframe as
    a wide shot), so a picture that shows nobody is read as a viewer reads it, by its background
    (``background_match.empty_framing``): every camera, place and light, at pans within the grammar's, at 32 and 64 px.
    Keyframes with figures read as the network reads them."""
    from moviedreamer_core.toycinema.film import KeyframePlan
    from moviedreamer_core.toycinema.grammar import PAN
    from moviedreamer_core.toycinema.world import CAMERAS, N_CAMERAS, N_LOCATIONS, N_PLACE_LOOKS

    rng = np.random.default_rng(11)
    plans = [KeyframePlan(location, camera, (), float(rng.uniform(-PAN, PAN)) * CAMERAS[camera].width, look)
             for camera in range(N_CAMERAS) for location in range(N_LOCATIONS) for look in range(N_PLACE_LOOKS)]
    for size in (32, 64):
        read = probe.predict(np.stack([render_keyframe(plan, size) for plan in plans]))
        assert [(r.camera, r.location, r.on_screen) for r in read] == [(p.camera, p.location, ()) for p in plans], size
    images = FILMS[2].images(32)
    with_figures = [i for i, label in enumerate(FILMS[2].labels()) if label.on_screen]
    assert probe.predict(images[with_figures]) == probe.predict(images[with_figures], frame_empty=False)
    # a figure the network misses (here every figure: no presence passes a threshold above 1) is no empty place: a
    # medium shot or close-up keeps the network's camera and place rather than the nearest empty background's
    closer = [i for i in with_figures if FILMS[2].keyframes[i].camera != camera_id("wide")]
    assert closer and probe.predict(images[closer], threshold=1.01) == probe.predict(images[closer], threshold=1.01,
                                                                                       frame_empty=False)


def test_probe_reads_each_films_looks_and_hats(probe):
    """The per-film state (issue #21): the place's look on every keyframe, the hat at each figure's place in medium and
    close-up keyframes (a wide shot's hat is a pixel or two), on films of another seed, at 32 and 64 px. Measured with
    this test's probe (400 steps on 160 films): looks 0.995 / 0.995, hats 1.0 / 1.0 (438 of them), unscripted state
    0.997 / 0.997 against a best constant guess of 0.37, at 32 / 64 px; the shipped probe (1200 steps, 240 films)
    reads places, lights and hats at 1.00 on 24 films of another seed. Bounds: looks 0.92, hats 0.97, unscripted state 0.94."""
    from moviedreamer_core.toycinema.probe import HAT_CAMERAS
    from moviedreamer_core.toycinema.scores import unscripted_scores

    films = generate_films(777, 16)
    for size in (32, 64):
        states = probe.read_state(np.concatenate([f.images(size) for f in films]))
        plans = [k for f in films for k in f.keyframes]
        assert np.mean([s["look"] == p.look for s, p in zip(states, plans)]) >= 0.92
        hats = [s["hats"][pos] == h for s, p in zip(states, plans) if p.camera in HAT_CAMERAS
                for (_, pos, _), h in zip(p.figures, p.hats)]
        assert len(hats) > 100 and np.mean(hats) >= 0.97, (size, np.mean(hats))
        u = unscripted_scores(states, films)
        assert u["unscripted_state"] >= 0.94 and u["unscripted_chance"] <= 0.6, u


def test_probe_accepts_comfy_images_and_round_trips_through_safetensors(probe, tmp_path):
    import torch

    from moviedreamer_core.toycinema.probe import Probe

    images = FILMS[2].images(64)
    as_comfy = torch.from_numpy(images).float() / 255.0  # ComfyUI IMAGE: float [B, H, W, 3] in 0..1
    assert probe.predict(as_comfy) == probe.predict(images)
    assert probe.predict(images[0]) == probe.predict(images[:1])
    path = tmp_path / "probe.safetensors"
    probe.save(str(path))
    loaded = Probe.load(str(path))
    assert loaded.predict(images) == probe.predict(images)
    assert loaded.info["n_films"] == 160
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a toy cinema probe"):
        Probe.load(str(tmp_path / "other.safetensors"))
