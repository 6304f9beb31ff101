"""The toy cinema's identity embedder: crop geometry, held-out identification, separation of the reference
portraits, safetensors round trip, and the consistency score.

Thresholds. Measured on this machine (2 CPU cores shared with other jobs, one torch thread) for nets
trained 300 steps on 24 films (33-37 s with rendering), scored on 16 held-out films drawn from another
seed, each crop assigned to the nearest reference-portrait embedding (64 px references): training seeds
0, 1, 2 gave 1.000 at 64 px and 1.000 at 32 px, on every camera (wide, medium, close-up), also after a 3x3
blur of the keyframes, and 0.98-1.00 for 32 px keyframes halved to 16 px and enlarged back. Different
characters' reference embeddings had pairwise cosines of at most 0.08; one character's 64 px and 32 px
references, at least 0.99. Real crops had cosine >= 0.89 to their own reference; windows where nobody
stands at most 0.26 to any reference, and all of them were nearest the ``nobody`` direction. The asserts
leave a margin below these figures: accuracy >= 0.97 at both sizes (>= 0.99 on medium and close-up
shots), reference cosines between characters < 0.6, empty windows below 0.5.

In the world with per-film lights and hats (issue #21, the grey light desaturating) the nets of 300 steps fell short
on real crops (1% quantile of the cosine to their own reference 0.78 at 32 px on 24 films, 0.75 on 96), so the test
trains the shipped embedder's budget, 500 steps on 32 films: accuracy 1.00 at 64 and 32 px, 1% quantile of the own
reference's cosine 0.85 / 0.82 (bound 0.8), smallest 0.79 / 0.80.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from moviedreamer_core.identity.base import EmbeddingSpace, FaceEmbedder
from moviedreamer_core.toycinema import KeyframePlan, generate_films, render_keyframe, render_reference
from moviedreamer_core.toycinema.identity import (
    INPUT_SIZE,
    SPACE_PREFIX,
    ToyIdentityEmbedder,
    ToyIdentityNet,
    character_boxes,
    character_crops,
    crop_boxes,
    film_crops,
    identity_consistency,
    train_identity_embedder,
)
from moviedreamer_core.toycinema.world import CHARACTERS, N_CHARACTERS, NEUTRAL, camera_id

WIDE, MEDIUM, CLOSE_UP = camera_id("wide"), camera_id("medium"), camera_id("close_up")
TRAIN_SEED, HELD_OUT_SEED = 0, 4242


def colour_pixels(image: np.ndarray, rgb, tol: int = 8) -> np.ndarray:
    return np.abs(image.astype(int) - np.asarray(rgb)).max(-1) <= tol


@pytest.fixture(scope="module")
def embedder() -> ToyIdentityEmbedder:
    return train_identity_embedder(seed=TRAIN_SEED, n_films=32, steps=500)


@pytest.fixture(scope="module")
def held_out():
    films = generate_films(HELD_OUT_SEED, 16)
    return {size: film_crops(films, size) for size in (64, 32)}


# ------------------------------------------------------------------------------------------- geometry


def test_boxes_hold_each_figure_and_crops_show_its_body_colour():
    plans = [
        KeyframePlan(0, WIDE, ((0, 0, 0.03), (1, 1, -0.02), (2, 2, 0.0)), pan=0.02),
        KeyframePlan(1, MEDIUM, ((3, 0, -0.04), (4, 1, 0.04), (5, 2, 0.01)), pan=-0.01),
        KeyframePlan(2, CLOSE_UP, ((5, 0, -0.04), (0, 2, 0.04))),
        KeyframePlan(3, CLOSE_UP, ((1, 1, 0.0),)),
    ]
    for plan in plans:
        for size in (32, 64):
            image = render_keyframe(plan, size)
            crops = character_crops(image, plan)
            assert [c for c, _ in crops] == [c for c, _, _ in plan.figures]
            for (c, box), (_, crop) in zip(character_boxes(plan, size), crops):
                assert crop.shape == (INPUT_SIZE, INPUT_SIZE, 3) and crop.dtype == np.uint8
                # Every pixel of the character's body colour lies inside its box (one pixel of slack).
                ys, xs = np.nonzero(colour_pixels(image, CHARACTERS[c].body, tol=2))
                assert len(xs) > 0
                assert xs.min() >= np.floor(box[0]) - 1 and xs.max() <= np.ceil(box[2]) + 1
                assert ys.min() >= np.floor(box[1]) - 1 and ys.max() <= np.ceil(box[3]) + 1
                # The crop shows this character's body, and more of it than of anybody else's.
                counts = [colour_pixels(crop, look.body).sum() for look in CHARACTERS]
                assert counts[c] >= 4 and int(np.argmax(counts)) == c, (plan, size, c, counts)
            if len(crops) == 3:
                flat = [crop.tobytes() for _, crop in crops]
                assert len(set(flat)) == 3


def test_crop_of_a_centred_close_up_is_framed_like_the_reference_portrait():
    plan = KeyframePlan(0, CLOSE_UP, ((2, 1, 0.0),))
    (c, box), = crop_boxes(plan, 64)
    assert c == 2 and np.allclose(box, (0, 0, 64, 64))
    # Same framing: the body, hair and skin pixels sit in exactly the same places as in the portrait.
    frame, portrait = render_keyframe(plan, 64), render_reference(2, 64)
    (_, crop), = character_crops(frame, plan, out_size=64)
    for rgb in (CHARACTERS[2].body, CHARACTERS[2].hair, CHARACTERS[2].skin):
        assert colour_pixels(portrait, rgb, tol=0).sum() > 10
        assert np.array_equal(colour_pixels(crop, rgb, tol=0), colour_pixels(portrait, rgb, tol=0))


def test_crop_leaving_the_frame_is_padded_with_neutral_grey():
    plan = KeyframePlan(4, CLOSE_UP, ((3, 0, -0.04), (1, 2, 0.04)))
    image = render_keyframe(plan, 64)
    (_, left), (_, right) = character_crops(image, plan, out_size=64)
    assert colour_pixels(left[:, :10], NEUTRAL, tol=0).all()  # the left third of the window is off screen
    assert colour_pixels(right[:, -10:], NEUTRAL, tol=0).all()
    assert not colour_pixels(left[:, 32], NEUTRAL, tol=0).all()


# ------------------------------------------------------------------------------------------- the net


def test_net_is_small_and_embeddings_are_unit_vectors(embedder):
    assert sum(p.numel() for p in embedder.net.parameters()) < 200_000
    assert isinstance(embedder, FaceEmbedder)
    assert embedder.space.dim == 32 and embedder.space.encoder == f"{SPACE_PREFIX}-{embedder.fingerprint}"
    assert EmbeddingSpace.from_dict(embedder.space.to_dict()) == embedder.space
    refs = [render_reference(c, 64) for c in range(N_CHARACTERS)]
    many = embedder.embed_many(refs)
    assert many.shape == (N_CHARACTERS, 32) and many.dtype == np.float32
    assert np.allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    assert np.allclose(many[3], embedder.embed(refs[3]), atol=1e-5)
    assert embedder.embed(render_reference(3, 40)).shape == (32,)  # any size >= 8
    assert embedder.face_crop(np.zeros((20, 30, 3), np.uint8)).shape == (20, 20, 3)
    with pytest.raises(ValueError):
        embedder.embed(refs[0].astype(np.float32))
    assert embedder.embed_crops([]).shape == (0, 32)
    assert embedder.info["seconds"] < 90


@pytest.mark.parametrize("size", [64, 32])
def test_held_out_crops_are_identified_by_the_nearest_reference_portrait(embedder, held_out, size):
    crops = held_out[size]
    pred = embedder.classify(crops.crops, embedder.reference_embeddings(64))
    hit = pred == crops.characters
    per_camera = {cam: float(hit[crops.cameras == cam].mean()) for cam in (WIDE, MEDIUM, CLOSE_UP)}
    print(f"{size} px: accuracy {hit.mean():.3f}, per camera {per_camera}")
    assert len(set(crops.characters.tolist())) == N_CHARACTERS and min(np.bincount(crops.cameras)) > 30
    assert hit.mean() >= 0.97
    assert per_camera[MEDIUM] >= 0.99 and per_camera[CLOSE_UP] >= 0.99


def test_windows_where_nobody_stands_are_nobody(embedder, held_out):
    """Generated keyframes may lose a character: its window must not look like anybody."""
    refs = embedder.reference_embeddings(64)
    films = generate_films(HELD_OUT_SEED, 16)
    windows = []
    for loc in range(6):  # empty scenes at a pan never seen in training
        for cam in (WIDE, MEDIUM, CLOSE_UP):
            ghosts = KeyframePlan(loc, cam, tuple((0, p, 0.017) for p in range(3)), pan=0.011)
            windows += [w for _, w in character_crops(render_keyframe(KeyframePlan(loc, cam, (), 0.011), 32), ghosts)]
    for film in films[:6]:  # free screen positions of wide and medium keyframes, at 64 px
        for plan, image in zip(film.keyframes, film.images(64)):
            free = sorted(set(range(3)) - {p for _, p, _ in plan.figures})
            if plan.camera != CLOSE_UP and free:
                ghosts = KeyframePlan(plan.location, plan.camera, tuple((0, p, 0.0) for p in free), plan.pan)
                windows += [w for _, w in character_crops(image, ghosts)]
    windows = np.stack(windows)
    assert len(windows) > 100
    cos = embedder.embed_crops(windows) @ refs.T
    assert cos.max() < 0.5 and (embedder.classify(windows, refs, allow_nobody=True) == -1).mean() >= 0.97
    crops = held_out[32]
    true_cos = (embedder.embed_crops(crops.crops) @ refs.T)[np.arange(len(crops)), crops.characters]
    assert np.quantile(true_cos, 0.01) > 0.8
    pred = embedder.classify(crops.crops, refs, allow_nobody=True)
    assert (pred == crops.characters).mean() >= 0.97


def test_reference_portraits_are_not_collapsed(embedder):
    r64, r32 = embedder.reference_embeddings(64), embedder.reference_embeddings(32)
    cos = r64 @ r64.T
    off = ~np.eye(N_CHARACTERS, dtype=bool)
    assert cos[off].max() < 0.6, np.round(cos, 2)
    cross = r64 @ r32.T
    for c in range(N_CHARACTERS):
        others = np.delete(cross[c], c)
        assert cross[c, c] > 0.9 and cross[c, c] > others.max() + 0.3


def test_training_is_deterministic_and_different_nets_get_different_spaces():
    a = train_identity_embedder(seed=5, n_films=2, steps=4, batch_size=16)
    b = train_identity_embedder(seed=5, n_films=2, steps=4, batch_size=16)
    c = train_identity_embedder(seed=6, n_films=2, steps=4, batch_size=16)
    assert a.space == b.space and a.space != c.space
    refs = [render_reference(k, 32) for k in range(N_CHARACTERS)]
    assert np.array_equal(a.embed_many(refs), b.embed_many(refs))


# ------------------------------------------------------------------------------------------- files


def test_save_load_round_trip_through_safetensors_only(embedder, held_out, tmp_path):
    path = tmp_path / "identity.safetensors"
    embedder.save(str(path))
    again = ToyIdentityEmbedder.load(str(path))
    crops = held_out[32].crops[:50]
    assert np.array_equal(again.embed_crops(crops), embedder.embed_crops(crops))
    assert again.space == embedder.space and again.info == embedder.info

    # A pickle file (here a payload that would create a file if unpickled) is refused, never unpickled.
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    pickled = tmp_path / "identity.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"state": Payload()}, f)
    torch_saved = tmp_path / "identity_torch.pt"
    torch.save(embedder.net.state_dict(), str(torch_saved))
    for bad in (pickled, torch_saved):
        with pytest.raises(ValueError):
            ToyIdentityEmbedder.load(str(bad))
    assert not marker.exists()

    # A safetensors file of another kind is refused by its format tag.
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a toy cinema identity"):
        ToyIdentityEmbedder.load(str(other))
    assert isinstance(again.net, ToyIdentityNet)


# ------------------------------------------------------------------------------------------- scoring


def test_identity_consistency_on_true_and_shuffled_labels(embedder, held_out):
    crops = held_out[32]
    emb = embedder.embed_crops(crops.crops)
    true = identity_consistency(emb, crops.characters)
    assert true["nn_accuracy"] >= 0.98 and true["centroid_accuracy"] >= 0.98
    assert true["gap"] > 0.8 and true["same_cosine"] > 0.9
    shuffled = identity_consistency(emb, np.random.default_rng(0).permutation(crops.characters))
    assert abs(shuffled["nn_accuracy"] - shuffled["chance"]) < 0.08
    assert abs(shuffled["gap"]) < 0.05 and shuffled["centroid_accuracy"] < 0.35
    assert shuffled["chance"] == pytest.approx(true["chance"])


def test_identity_consistency_on_handmade_vectors():
    e = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    out = identity_consistency(e, [0, 0, 1, 1])
    assert out["nn_accuracy"] == 1.0 and out["centroid_accuracy"] == 1.0 and out["chance"] == pytest.approx(1 / 3)
    assert identity_consistency(e, [0, 1, 0, 1])["nn_accuracy"] == 0.0
