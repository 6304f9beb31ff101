"""Face identity: dlib on real faces, the CLIP crop fallback, InsightFace's refusals, the on-disk cache.

Real photos come from packages installed with the test tools: scikit-image's astronaut (Eileen Collins)
and matplotlib's Grace Hopper.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviedreamer_core.identity import (EMBEDDER_CHOICES, EMBEDDER_DOCS, EmbeddingSpace, FaceEmbedder, IdentityCache,
                                       NoFaceFoundError, image_sha256)
from moviedreamer_core.identity.cache import tag_folder
from moviedreamer_core.identity.clip_crop import CropEncoderEmbedder, crop_square, square_crop_box
from moviedreamer_core.identity.dlib_embedder import DlibFaceEmbedder, choose_face, detect_largest_face
from moviedreamer_core.identity.insightface_embedder import InsightFaceEmbedder, find_model_pack

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut photo (tests/requirements.txt)")
matplotlib = pytest.importorskip("matplotlib", reason="matplotlib ships the Grace Hopper photo (tests/requirements.txt)")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def augmented(image: np.ndarray) -> np.ndarray:
    """Same person, different photo conditions: mirrored, rescaled, brighter."""
    flipped = Image.fromarray(np.ascontiguousarray(image[:, ::-1])).resize((400, 400), Image.BICUBIC)
    return np.clip(np.asarray(flipped).astype(np.float32) * 1.15 + 10, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- dlib


@pytest.fixture(scope="module")
def dlib_embedder():
    return DlibFaceEmbedder()


def test_dlib_same_person_is_closer_than_another_person(dlib_embedder, astronaut, hopper):
    a = dlib_embedder.embed(astronaut)
    a2 = dlib_embedder.embed(augmented(astronaut))
    h = dlib_embedder.embed(hopper)
    assert a.shape == (128,) and a.dtype == np.float32
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    # distances between L2-normalised descriptors
    same, other = np.linalg.norm(a - a2), np.linalg.norm(a - h)
    assert same < 0.5 * other, (same, other)
    # dlib's documented rule on its raw descriptors: the same person is within Euclidean distance 0.6
    raw_a, raw_a2, raw_h = (dlib_embedder._embed(im) for im in (astronaut, augmented(astronaut), hopper))
    assert np.linalg.norm(raw_a - raw_a2) < 0.6 < np.linalg.norm(raw_a - raw_h)


def test_dlib_picks_the_face_not_the_patch(astronaut):
    # Scaled to 384 px, the detector fires on her face (upper centre) and on her mission patch (lower left),
    # with boxes of the same size: the choice must come from the confidence.
    import dlib

    small = np.asarray(Image.fromarray(astronaut).resize((384, 384), Image.BICUBIC))
    rects, scores, _ = dlib.get_frontal_face_detector().run(small, 0, 0.0)
    assert len(rects) == 2  # the situation this test is about
    left, top, right, bottom = detect_largest_face(small)
    assert 100 < (left + right) / 2 < 220 and (top + bottom) / 2 < 150


def test_face_choice_weighs_area_by_confidence():
    import dlib

    r = dlib.rectangle
    patch, face = r(0, 0, 100, 100), r(200, 0, 290, 90)  # the doubtful box is slightly larger
    assert choose_face([patch, face], [0.1, 1.2]) == 1
    assert choose_face([face, patch], [1.2, 0.1]) == 0
    big_weak = r(0, 0, 400, 400)  # a weak but far larger face still wins over a small confident one
    assert choose_face([r(0, 0, 40, 40), big_weak], [1.5, 0.02]) == 1
    assert choose_face([], []) is None


def test_dlib_refuses_an_image_without_a_face(dlib_embedder):
    with pytest.raises(NoFaceFoundError):
        dlib_embedder.embed(skimage_data.coffee())
    with pytest.raises(NoFaceFoundError):
        dlib_embedder.embed(np.full((128, 128, 3), 127, dtype=np.uint8))


def test_embedders_check_their_input(dlib_embedder):
    with pytest.raises(ValueError, match=r"shape \[H, W, 3\]"):
        dlib_embedder.embed(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dlib_embedder.embed(np.zeros((64, 64, 3), dtype=np.float32))


# ------------------------------------------------------------------------------------------- clip crop


class PatchMeans(torch.nn.Module):
    """A tiny real image encoder: 4x4 average pooling of each channel then a fixed projection."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.proj = torch.nn.Linear(48, dim)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, H, W, 3] in 0..1
        self.calls += 1
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.movedim(-1, 1), 4)
        return self.proj(pooled.flatten(1))


def test_crop_embedder_uses_the_face_box_and_falls_back_to_the_centre(astronaut):
    enc = PatchMeans()
    emb = CropEncoderEmbedder(enc, name="patch", dim=8)
    assert emb.space == EmbeddingSpace("clip_vision_crop:patch", 8)

    face = detect_largest_face(astronaut)
    manual = crop_square(astronaut, square_crop_box(astronaut.shape[:2], face)).copy()
    expected = enc(torch.from_numpy(manual[None]).float() / 255).detach().numpy()[0]
    got = emb.embed(astronaut)
    assert np.allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    # the face crop is not the centre crop
    centre = crop_square(astronaut, square_crop_box(astronaut.shape[:2], None))
    c = enc(torch.from_numpy(centre[None]).float() / 255).detach().numpy()[0]
    assert not np.allclose(got, c / np.linalg.norm(c), atol=1e-3)

    # no face: centre crop, no error
    coffee = skimage_data.coffee()
    centre = crop_square(coffee, square_crop_box(coffee.shape[:2], None))
    e = enc(torch.from_numpy(centre[None]).float() / 255).detach().numpy()[0]
    assert np.allclose(emb.embed(coffee), e / np.linalg.norm(e), atol=1e-5)


def test_crop_box_is_square_and_inside_the_image():
    for shape, face in [((100, 200), (150, 10, 199, 60)), ((300, 120), (0, 0, 100, 100)), ((64, 64), None)]:
        l, t, r, b = square_crop_box(shape, face)
        assert r - l == b - t > 0
        assert 0 <= l and 0 <= t and r <= shape[1] and b <= shape[0]


def test_crop_rule_is_part_of_the_cache_tag(astronaut):
    enc = PatchMeans()
    face, centre = CropEncoderEmbedder(enc, "patch", 8), CropEncoderEmbedder(enc, "patch", 8, detect=False)
    wide = CropEncoderEmbedder(enc, "patch", 8, margin=2.0)
    assert face.space == centre.space == wide.space
    assert len({face.cache_tag, centre.cache_tag, wide.cache_tag}) == 3
    c = crop_square(astronaut, square_crop_box(astronaut.shape[:2], None))
    e = enc(torch.from_numpy(c[None]).float() / 255).detach().numpy()[0]
    assert np.allclose(centre.embed(astronaut), e / np.linalg.norm(e), atol=1e-5)


def test_crop_embedder_batches(astronaut, hopper):
    enc = PatchMeans()
    emb = CropEncoderEmbedder(enc, name="patch", dim=8)
    many = emb.embed_many([astronaut, hopper, astronaut])
    assert enc.calls == 1 and many.shape == (3, 8)
    assert np.allclose(many[0], many[2]) and np.allclose(many[0], emb.embed(astronaut), atol=1e-5)


# ----------------------------------------------------------------------------------------- insightface


def test_insightface_missing_is_a_clear_error(tmp_path):
    try:
        import insightface  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install insightface"):
            InsightFaceEmbedder(roots=[str(tmp_path)])
    else:  # pragma: no cover - only where insightface is installed
        with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
            InsightFaceEmbedder(roots=[str(tmp_path)])


def test_insightface_model_pack_lookup(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "models" / "antelopev2").mkdir(parents=True)
    (b / "models" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    (a / "models" / "antelopev2").mkdir(parents=True)  # exists but empty: skipped
    assert find_model_pack([str(a), str(b)], "antelopev2") == str(b / "models" / "antelopev2")
    with pytest.raises(FileNotFoundError) as err:
        find_model_pack([str(a)], "buffalo_l")
    assert str(a / "models" / "buffalo_l") in str(err.value)


def test_insightface_nested_model_pack_gets_a_hint(tmp_path):
    # The antelopev2 zip unpacks to models/antelopev2/antelopev2/*.onnx, which FaceAnalysis cannot use.
    nested = tmp_path / "models" / "antelopev2" / "antelopev2"
    nested.mkdir(parents=True)
    (nested / "scrfd_10g_bnkps.onnx").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="move them up one folder") as err:
        find_model_pack([str(tmp_path)], "antelopev2")
    assert str(nested) in str(err.value)


def test_embedder_choices():
    assert EMBEDDER_CHOICES == ["dlib", "insightface", "clip_vision_crop"]
    assert set(EMBEDDER_DOCS) == set(EMBEDDER_CHOICES)


# ----------------------------------------------------------------------------------------------- cache


class CountingEmbedder(FaceEmbedder):
    """A real embedder (channel means) that counts how often it runs."""

    space = EmbeddingSpace("count", 3)

    def __init__(self, tag="count"):
        self.space = EmbeddingSpace(tag, 3)
        self.calls = 0
        self.batches = 0

    def _embed(self, image):
        self.calls += 1
        if image.max() == 0:
            raise NoFaceFoundError("black")
        return image.reshape(-1, 3).mean(0) + 1

    def embed_many(self, images):
        self.batches += 1
        return super().embed_many(images)


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(n)]


def test_cache_hits_after_first_use_and_across_instances(tmp_path):
    emb, (img,) = CountingEmbedder(), images(1)
    cache = IdentityCache(str(tmp_path))
    first = cache.get_or_compute(emb, img)
    again = cache.get_or_compute(emb, img)
    assert emb.calls == 1 and cache.hits == 1 and cache.misses == 1
    assert np.array_equal(first, again)
    fresh = IdentityCache(str(tmp_path))  # a new process: disk hit
    assert np.array_equal(fresh.get_or_compute(emb, img.copy()), first)
    assert emb.calls == 1 and fresh.hits == 1
    files = list(Path(tmp_path).rglob("*.safetensors"))
    assert len(files) == 1 and image_sha256(img) in files[0].name
    assert not list(Path(tmp_path).rglob("*.tmp"))


def test_cache_separates_embedders_and_images(tmp_path):
    cache = IdentityCache(str(tmp_path))
    a, b = CountingEmbedder("a"), CountingEmbedder("b")
    img, other = images(2)
    cache.get_or_compute(a, img)
    cache.get_or_compute(b, img)
    cache.get_or_compute(a, other)
    assert (a.calls, b.calls) == (2, 1) and cache.hits == 0


def test_cache_recomputes_a_corrupt_entry(tmp_path):
    emb, (img,) = CountingEmbedder(), images(1)
    IdentityCache(str(tmp_path)).get_or_compute(emb, img)
    (path,) = Path(tmp_path).rglob("*.safetensors")
    path.write_bytes(b"garbage")
    cache = IdentityCache(str(tmp_path))
    vec = cache.get_or_compute(emb, img)
    assert emb.calls == 2 and cache.misses == 1
    assert np.allclose(vec, emb.embed(img))
    assert IdentityCache(str(tmp_path)).get_or_compute(emb, img) is not None and emb.calls == 3  # the embed() above


def test_cache_batches_only_the_misses_and_never_caches_errors(tmp_path):
    emb = CountingEmbedder()
    cache = IdentityCache(str(tmp_path))
    imgs = images(4)
    cache.get_or_compute_many(emb, imgs[:2])
    out = cache.get_or_compute_many(emb, imgs)
    assert emb.batches == 2 and emb.calls == 4 and out.shape == (4, 3)
    black = np.zeros((16, 16, 3), dtype=np.uint8)
    with pytest.raises(NoFaceFoundError):
        cache.get_or_compute(emb, black)
    assert not (Path(tmp_path) / emb.cache_tag / image_sha256(black)[:2] / (image_sha256(black) + ".safetensors")).exists()


def test_dlib_through_the_cache_is_free_the_second_time(tmp_path, dlib_embedder, astronaut):
    cache = IdentityCache(str(tmp_path))
    first = cache.get_or_compute(dlib_embedder, astronaut)
    second = IdentityCache(str(tmp_path)).get_or_compute(dlib_embedder, astronaut)
    assert np.array_equal(first, second)
    assert os.path.isdir(tmp_path / dlib_embedder.cache_tag)


def test_cache_embeds_a_repeated_image_once(tmp_path):
    emb = CountingEmbedder()
    cache = IdentityCache(str(tmp_path))
    img, other = images(2)
    out = cache.get_or_compute_many(emb, [img, other, img.copy()])
    assert emb.calls == 2 and emb.batches == 1 and (cache.misses, cache.hits) == (2, 1)
    assert np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[1])


def test_cache_that_cannot_write_still_answers(tmp_path, caplog):
    root = tmp_path / "not_a_folder"
    root.write_text("a file where the cache folder should be")
    emb, (img,) = CountingEmbedder(), images(1)
    cache = IdentityCache(str(root))
    with caplog.at_level("WARNING"):
        vec = cache.get_or_compute(emb, img)
    assert np.allclose(vec, emb.embed(img)) and "could not write" in caplog.text
    assert np.array_equal(cache.get_or_compute(emb, img), vec) and cache.hits == 1  # memory layer


def test_cache_folders_are_safe_file_names(tmp_path, astronaut):
    tags = ["clip_vision_crop:comfy.clip_vision-768-v1-face1.6", "clip_vision_crop/comfy.clip_vision-768-v1-face1.6"]
    folders = [tag_folder(t) for t in tags]
    assert all(":" not in f and "/" not in f for f in folders) and folders[0] != folders[1]
    assert tag_folder("dlib_resnet_v1-128-v1-j1") == "dlib_resnet_v1-128-v1-j1"
    enc = PatchMeans()
    emb = CropEncoderEmbedder(enc, "comfy.clip_vision", 8)
    first = IdentityCache(str(tmp_path)).get_or_compute(emb, astronaut)
    second = IdentityCache(str(tmp_path)).get_or_compute(emb, astronaut)
    assert enc.calls == 1 and np.array_equal(first, second)
    (path,) = Path(tmp_path).rglob("*.safetensors")
    assert ":" not in str(path.relative_to(tmp_path))
