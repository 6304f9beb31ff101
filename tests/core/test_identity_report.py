"""The per-keyframe identity report (``moviedreamer_core/identity_report.py``): the assignment and the flags on
hand-made embeddings (missing, doubled, closer to someone else, extra faces, unchecked characters), then on real
faces through dlib (scikit-image's astronaut, Eileen Collins, and matplotlib's Grace Hopper, composed side by side
into keyframes), through the CLIP-crop embedder's face list, and on the toy cinema's keyframes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviedreamer_core.identity.base import MAX_FACES, EmbeddingSpace, Face, FaceEmbedder
from moviedreamer_core.identity_report import (DEFAULT_THRESHOLDS, FALLBACK_THRESHOLD, KeyframeChecker, assign,
                                               default_threshold, identity_report, panel_view, similarity_matrix,
                                               summarise)
from moviedreamer_core.script import load_script
from moviedreamer_core.script_encoding import TextEncoder, encode_script

NAMES = ["Ava", "Bo", "Cy"]
THRESHOLD = 0.8


def unit(*values) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


#: Ava, Bo and Cy are three orthogonal directions; Cy has two reference photos (two looks).
BANKS = [unit(1, 0, 0, 0)[None], unit(0, 1, 0, 0)[None], np.stack([unit(0, 0, 1, 0), unit(0, 0, 0, 1)])]


def face(*values, box=(0, 0, 10, 10)) -> Face:
    return Face(box, unit(*values))


def report(faces, on_screen, banks=BANKS, threshold=THRESHOLD) -> dict:
    r = identity_report(faces, on_screen, NAMES, banks, threshold)
    assert json.loads(json.dumps(r)) == r, "plain JSON data"
    return r


def flags(r) -> dict:
    return {c["name"]: c["flags"] for c in r["characters"]}


# ------------------------------------------------------------------------------------------- hand-made embeddings


def test_everyone_found_on_their_own_face_whatever_the_order():
    r = report([face(0.1, 1, 0, 0, box=(50, 0, 60, 10)), face(1, 0.1, 0, 0)], [0, 1])
    assert r["ok"] and r["flags"] == [] and r["extra"] == []
    ava, bo = r["characters"]
    assert (ava["name"], ava["found"], ava["face"], ava["box"]) == ("Ava", True, 1, [0, 0, 10, 10])
    assert (bo["name"], bo["found"], bo["face"], bo["box"]) == ("Bo", True, 0, [50, 0, 60, 10])
    assert ava["similarity"] == pytest.approx(float(unit(1, 0.1, 0, 0)[0]), abs=1e-4)
    assert ava["other"] == "Bo" and ava["other_similarity"] == pytest.approx(float(unit(1, 0.1, 0, 0)[1]), abs=1e-4)
    assert [f["assigned"] for f in r["faces"]] == ["Bo", "Ava"] and [f["nearest"] for f in r["faces"]] == ["Bo", "Ava"]


def test_a_character_matches_the_nearest_of_their_reference_looks():
    r = report([face(0, 0, 0.1, 1)], [2])
    assert r["ok"] and r["characters"][0]["similarity"] == pytest.approx(float(unit(0, 0, 0.1, 1)[3]), abs=1e-4)


def test_missing_with_no_face_and_with_a_face_nobody_knows():
    assert flags(report([], [0, 1])) == {"Ava": ["missing"], "Bo": ["missing"]}
    r = report([face(1, 0, 0, 0)], [0, 1])  # one face for two characters
    assert flags(r) == {"Ava": [], "Bo": ["missing"]} and r["flags"] == ["Bo missing (no face)"]
    r = report([face(0.5, 0.5, 0.5, 0.5)], [0])  # a face, but not recognisably Ava (0.5 < 0.8)
    assert flags(r) == {"Ava": ["missing"]} and r["characters"][0]["found"] is False
    assert r["characters"][0]["face"] == 0 and r["extra"] == [0], "an unrecognised face is explained by nobody"
    assert r["flags"] == ["Ava missing (nearest face 0.50)", "extra face (nobody known)"]


def test_doubled_when_two_faces_are_recognised_as_one_character():
    r = report([face(1, 0.05, 0, 0), face(1, 0, 0.05, 0)], [0])
    assert flags(r) == {"Ava": ["doubled"]} and r["extra"] == [], "a second Ava is a double, not an extra face"
    assert r["flags"] == ["Ava doubled (2 faces)"] and not r["ok"]
    r = report([face(1, 0.05, 0, 0), face(1, 0, 0.05, 0), face(0.1, 1, 0, 0)], [0, 1])
    assert flags(r) == {"Ava": ["doubled"], "Bo": []}
    # below the threshold a second look-alike is no double: it is an unknown extra face
    r = report([face(1, 0, 0, 0), face(0.6, 0.55, 0.55, 0)], [0])
    assert flags(r) == {"Ava": []} and r["extra"] == [1]


def test_closer_to_someone_else_when_the_face_is_another_characters():
    # Ava on screen, Bo's face in the keyframe: Ava is missing, her face is Bo's, and Bo (off screen) is extra
    r = report([face(0.3, 1, 0, 0)], [0])
    assert flags(r) == {"Ava": ["missing", "closer_to:Bo"]} and r["extra"] == [0]
    assert r["characters"][0]["other"] == "Bo"
    # found (above the threshold) yet nearer to Cy's references: flagged, not missing
    r = report([face(1, 0, 1.05, 0)], [0], threshold=0.6)
    assert flags(r) == {"Ava": ["closer_to:Cy"]} and r["characters"][0]["found"]
    assert r["flags"][0].startswith("Ava closer to Cy (")
    # a swap: Ava and Bo on screen, each one's face where the other is assigned cannot happen (the assignment pairs
    # them right); with Cy's face instead of Bo's, Bo is missing and closer to Cy
    r = report([face(1, 0, 0, 0), face(0, 0.3, 1, 0)], [0, 1])
    assert flags(r) == {"Ava": [], "Bo": ["missing", "closer_to:Cy"]} and r["extra"] == [1]


def test_extra_faces_are_faces_no_on_screen_character_explains():
    r = report([face(1, 0, 0, 0), face(0, 1, 0, 0)], [0])
    assert r["extra"] == [1] and r["flags"] == ["extra face (Bo 1.00)"]
    r = report([face(0, 0, 1, 0)], [])  # nobody on screen, somebody drawn
    assert r["characters"] == [] and r["extra"] == [0] and not r["ok"]
    assert report([], [])["ok"]


def test_characters_without_references_are_unchecked_and_get_no_face():
    banks = [BANKS[0], None, BANKS[2]]
    r = report([face(1, 0, 0, 0), face(0, 1, 0, 0)], [0, 1], banks=banks)
    assert flags(r) == {"Ava": [], "Bo": ["unchecked"]}
    assert r["characters"][1]["found"] is None and r["characters"][1]["face"] is None
    assert r["extra"] == [1] and r["faces"][1]["nearest"] in ("Ava", "Cy"), "only characters with references compare"


def test_the_assignment_maximises_the_summed_similarity():
    # greedy would give face 0 to Ava (0.9) and leave Bo with 0.1; the best pairing is 0.8 + 0.85
    sim = np.array([[0.9, 0.85], [0.8, 0.1]], np.float32)
    assert assign(sim) == [(1, 0), (0, 1)]
    assert assign(np.zeros((0, 2))) == [] and len(assign(np.ones((3, 1)))) == 1
    assert similarity_matrix(np.zeros((0, 4)), BANKS).shape == (0, 3)
    assert similarity_matrix(np.eye(4, dtype=np.float32)[:1], [BANKS[0], None])[0, 1] == -np.inf


def test_thresholds_per_identity_space():
    assert default_threshold("dlib_resnet_v1") == 0.91
    assert default_threshold("insightface_buffalo_l") == 0.35
    assert default_threshold("clip_vision_crop:comfy.clip_vision.0123456789") == 0.80
    assert default_threshold("toycinema.identity-0123456789") == 0.5
    assert default_threshold("synthetic") == FALLBACK_THRESHOLD
    assert all(0 < t < 1 for _, t in DEFAULT_THRESHOLDS)


def test_summary_and_panel_view():
    reports = [report([face(1, 0, 0, 0), face(1, 0.01, 0, 0)], [0, 1]), report([face(0, 1, 0, 0)], [1]),
               report([], [2]), report([face(0, 1, 0, 0)], [], banks=BANKS)]
    s = summarise(reports)
    assert s["keyframes"] == 4 and s["characters"] == 4
    # keyframe 0: Ava drawn twice, and the face left for Bo is Ava's (Bo missing, closer to Ava)
    assert s["found"] == 0.5 and s["missing"] == 0.5 and s["doubled"] == 0.25 and s["closer_to_other"] == 0.25
    assert s["mean_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert s["extra_faces_per_keyframe"] == 0.25 and s["flagged_keyframes"] == 0.75
    assert summarise([])["found"] is None
    view = panel_view(reports[0])
    assert view == {"ok": False, "flags": reports[0]["flags"], "characters": [
        {"name": "Ava", "similarity": 1.0, "flags": ["doubled"]},
        {"name": "Bo", "similarity": reports[0]["characters"][1]["similarity"], "flags": ["missing", "closer_to:Ava"]}]}


# ------------------------------------------------------------------------------------------- real faces (dlib)

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut photo (tests/requirements.txt)")
matplotlib = pytest.importorskip("matplotlib", reason="matplotlib ships the Grace Hopper photo (tests/requirements.txt)")

SCRIPT = """
title: Identity report
style: photo
characters:
  - {name: Eileen, description: an astronaut, references: [0]}
  - {name: Grace, description: a naval officer, references: [1]}
  - {name: Mira, description: nobody has a photo of her}
shots:
  - {id: both, scene: a room, action: They meet., characters: [Eileen, Grace], camera: medium, duration: 2}
  - {id: alone, scene: a room, action: Eileen waits., characters: [Eileen], camera: close_up, duration: 2}
  - {id: mira, scene: a room, action: Eileen and Mira talk., characters: [Eileen, Mira], camera: medium, duration: 2}
"""


class ByteBag(torch.nn.Module):
    """A tiny real sentence encoder (byte histogram through a fixed projection)."""

    def forward(self, texts):
        hist = torch.zeros(len(texts), 256)
        for i, t in enumerate(texts):
            for b in t.encode():
                hist[i, b] += 1
        return hist @ torch.randn(256, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))


def another_photo(image: np.ndarray) -> np.ndarray:
    """The same person in other photo conditions: mirrored, rescaled, brighter (as test_identity.py's)."""
    flipped = Image.fromarray(np.ascontiguousarray(image[:, ::-1])).resize((400, 400), Image.BICUBIC)
    return np.clip(np.asarray(flipped).astype(np.float32) * 1.15 + 10, 0, 255).astype(np.uint8)


def keyframe(*photos, side: int = 256) -> np.ndarray:
    """Photos side by side, each scaled to ``side`` px square: a keyframe with one face per photo."""
    return np.concatenate([np.asarray(Image.fromarray(p).resize((side, side), Image.BICUBIC)) for p in photos], 1)


@pytest.fixture(scope="module")
def dlib_checker(astronaut, hopper):
    from moviedreamer_core.identity.dlib_embedder import DlibFaceEmbedder

    batch = torch.from_numpy(np.stack([np.asarray(Image.fromarray(p).resize((512, 512))) for p in (astronaut, hopper)])).float() / 255
    script = load_script(SCRIPT, image_count=2)
    embeds = encode_script(script, TextEncoder(ByteBag(), EmbeddingSpace("bytes", 8)), DlibFaceEmbedder(), batch=batch)
    assert isinstance(embeds.face_embedder, DlibFaceEmbedder), "ScriptEmbeds carries the embedder that made its banks"
    return KeyframeChecker(embeds, embeds.face_embedder)


def test_dlib_two_people_side_by_side_are_both_found(dlib_checker, astronaut, hopper):
    assert dlib_checker.threshold == 0.91
    faces = dlib_checker.embedder.faces(keyframe(another_photo(astronaut), another_photo(hopper)))
    assert len(faces) == 2 and sorted(f.box[2] <= 256 for f in faces) == [False, True], "one face in each half"
    r = dlib_checker.report(0, keyframe(another_photo(hopper), another_photo(astronaut)))
    assert r["ok"], r["flags"]
    eileen, grace = r["characters"]
    assert eileen["found"] and eileen["box"][0] >= 256 and eileen["similarity"] > 0.95
    assert grace["found"] and grace["box"][2] <= 256 and grace["similarity"] > 0.95
    assert eileen["other"] == "Grace" and eileen["other_similarity"] < 0.91
    assert r["space"] == "dlib_resnet_v1" and r["key"] == dlib_checker.key(0)


def test_dlib_the_same_person_twice_is_doubled(dlib_checker, astronaut):
    r = dlib_checker.report(1, keyframe(astronaut, another_photo(astronaut)))
    assert flags(r) == {"Eileen": ["doubled"]} and r["extra"] == [] and r["flags"] == ["Eileen doubled (2 faces)"]


def test_dlib_someone_else_in_a_characters_place_is_closer_to_them(dlib_checker, hopper):
    r = dlib_checker.report(1, keyframe(another_photo(hopper)))  # Eileen's close-up shows Grace
    assert flags(r) == {"Eileen": ["missing", "closer_to:Grace"]}
    assert r["extra"] == [0] and r["faces"][0]["nearest"] == "Grace" and r["faces"][0]["similarity"] > 0.95
    assert r["characters"][0]["similarity"] < 0.91


def test_dlib_no_face_and_a_character_without_photos(dlib_checker, astronaut, hopper):
    r = dlib_checker.report(1, np.full((256, 256, 3), 120, np.uint8))
    assert flags(r) == {"Eileen": ["missing"]} and r["faces"] == []
    r = dlib_checker.report(2, keyframe(another_photo(astronaut), another_photo(hopper)))
    assert flags(r) == {"Eileen": [], "Mira": ["unchecked"]}
    assert [r["faces"][i]["nearest"] for i in r["extra"]] == ["Grace"], "Grace is not in this shot"


@pytest.mark.parametrize("size", [(1024, 576), (1344, 768), (1920, 1088)])
def test_dlib_a_small_face_in_a_keyframe_of_an_sdxl_size_is_found(dlib_checker, astronaut, size):
    """Found by an audit: at 1024 px and more the detector ran once, without upsampling, and a wide shot's face of
    36-70 px was not found, so the character was flagged missing at every SDXL size (found at 1000 px)."""
    w, h = size
    frame = np.full((h, w, 3), 120, np.uint8)
    face = np.asarray(Image.fromarray(another_photo(astronaut)).resize((250, 250)))  # a face about 45 px wide
    frame[h // 2 - 125:h // 2 + 125, w // 3 - 125:w // 3 + 125] = face
    r = dlib_checker.report(1, frame)
    assert flags(r) == {"Eileen": []} and r["characters"][0]["similarity"] > 0.91, r
    assert 30 <= r["characters"][0]["box"][2] - r["characters"][0]["box"][0] <= 70


def test_dlib_a_small_face_beside_a_large_one_in_an_sdxl_keyframe_is_found(dlib_checker, astronaut, hopper):
    """A review: the upsampled pass ran only when no face at all was found, so in a 1344x768 two-shot with one large
    face and one of about 45 px the small one was not seen and its character flagged missing. The report tells the
    detector how many characters the shot has; with fewer faces found it looks again, upsampled."""
    frame = np.full((768, 1344, 3), 120, np.uint8)
    frame[100:612, 700:1212] = np.asarray(Image.fromarray(another_photo(hopper)).resize((512, 512)))
    frame[300:550, 100:350] = np.asarray(Image.fromarray(another_photo(astronaut)).resize((250, 250)))
    assert len(dlib_checker.embedder.faces(frame)) == 1, "without the hint: the large face only"
    r = dlib_checker.report(0, frame)  # keyframe 0 shows Grace and Eileen
    assert flags(r) == {"Eileen": [], "Grace": []}, r


def test_stored_reports_are_reused_only_for_the_same_references(dlib_checker, astronaut, hopper):
    image = keyframe(another_photo(astronaut), another_photo(hopper))
    r = dlib_checker.report(0, image)
    assert dlib_checker.stored(0, {"identity": r}) == r and dlib_checker.stored(0, {}) is None
    assert dlib_checker.report(0, image) == r, "deterministic"
    assert dlib_checker.stored(1, {"identity": r}) is None, "another keyframe's cast and camera: another key"
    stricter = KeyframeChecker(dlib_checker.embeds, dlib_checker.embedder, threshold=0.95)
    assert stricter.stored(0, {"identity": r}) is None
    swapped = load_script(SCRIPT.replace("references: [0]", "references: [9]").replace("references: [1]", "references: [0]")
                          .replace("references: [9]", "references: [1]"), image_count=2)
    batch = torch.from_numpy(np.stack([np.asarray(Image.fromarray(p).resize((512, 512))) for p in (astronaut, hopper)])).float() / 255
    other = encode_script(swapped, TextEncoder(ByteBag(), EmbeddingSpace("bytes", 8)), dlib_checker.embedder, batch=batch)
    assert KeyframeChecker(other, other.face_embedder).stored(0, {"identity": r}) is None


def test_dlib_faces_are_bounded_and_most_face_like_first(dlib_checker, astronaut, hopper):
    image = keyframe(astronaut, hopper, another_photo(astronaut), side=192)
    faces = dlib_checker.embedder.faces(image)
    assert len(faces) == 3 and len(dlib_checker.embedder.faces(image, limit=2)) == 2
    assert dlib_checker.embedder.faces(image, limit=0) == []
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) * f.score for f in faces]
    assert areas == sorted(areas, reverse=True) and all(f.score >= 0.5 for f in faces)
    # the mirrored astronaut's mission patch is a detection of dlib's (score 0.42), not a face
    assert all(abs(np.linalg.norm(f.embedding) - 1) < 1e-5 for f in faces)
    assert MAX_FACES == 16


def test_the_clip_crop_embedder_lists_each_face_or_its_centre_crop(astronaut, hopper):
    from moviedreamer_core.identity.clip_crop import CropEncoderEmbedder

    class PatchMeans(torch.nn.Module):
        def forward(self, images):
            pooled = torch.nn.functional.adaptive_avg_pool2d(images.movedim(-1, 1), 4).flatten(1)
            return pooled @ torch.randn(48, 8, generator=torch.Generator().manual_seed(0))

    emb = CropEncoderEmbedder(PatchMeans(), "patch", 8)
    image = keyframe(astronaut, hopper)
    faces = emb.faces(image)
    assert len(faces) == 2 and {f.box[0] < 256 for f in faces} == {True, False}
    single = emb.faces(np.ascontiguousarray(image[:, 256:]))
    assert len(single) == 1 and np.allclose(single[0].embedding, emb.embed(np.ascontiguousarray(image[:, 256:])), atol=1e-5)
    centre = emb.faces(skimage_data.coffee())
    assert len(centre) == 1 and np.allclose(centre[0].embedding, emb.embed(skimage_data.coffee()), atol=1e-5)
    assert CropEncoderEmbedder(PatchMeans(), "patch", 8, detect=False).faces(image)[0].box == (128, 0, 384, 256)


def test_an_embedder_without_a_detector_sees_the_whole_image_as_one_face():
    class Colour(FaceEmbedder):
        space = EmbeddingSpace("colour", 3)

        def _embed(self, image):
            from moviedreamer_core.identity.base import NoFaceFoundError

            if image.mean() < 5:
                raise NoFaceFoundError("dark")
            return image.reshape(-1, 3).mean(0)

    faces = Colour().faces(np.full((20, 30, 3), 100, np.uint8))
    assert len(faces) == 1 and faces[0].box == (0, 0, 30, 20) and faces[0].score == 1.0
    assert Colour().faces(np.zeros((20, 30, 3), np.uint8)) == []


# ------------------------------------------------------------------------------------------- the toy cinema


@pytest.mark.usefixtures("one_torch_thread")
def test_toy_keyframes_ground_truth_is_found_and_a_character_drawn_twice_is_doubled():
    from moviedreamer_core.toycinema import KeyframePlan, generate_films, render_keyframe
    from moviedreamer_core.toycinema.counting import VALIDATION_SEED
    from moviedreamer_core.toycinema.identity import ToyIdentityEmbedder
    from moviedreamer_core.toycinema.world import CAMERAS, CHARACTERS, camera_id

    embedder = ToyIdentityEmbedder.load(str(Path(__file__).resolve().parents[2] / "moviedreamer_core" / "toycinema"
                                            / "weights" / "toycinema_identity.safetensors"))
    refs = embedder.reference_embeddings(64)
    names, banks = [c.name for c in CHARACTERS], [refs[i:i + 1] for i in range(len(CHARACTERS))]
    threshold = default_threshold(embedder.space.encoder)
    reports = []
    for film in generate_films(VALIDATION_SEED, 4):
        for image, plan in zip(film.images(32), film.keyframes):
            faces = embedder.faces(image, camera=CAMERAS[plan.camera].name)
            reports.append(identity_report(faces, [c for c, _, _ in plan.figures], names, banks, threshold))
    s = summarise(reports)
    assert s["characters"] > 80 and s["found"] >= 0.98 and s["doubled"] == 0 and s["closer_to_other"] == 0
    # Measured with the identity embedder retrained on the world with hats (issue #21): these 4 films 3 extra faces in
    # 109 keyframes (0.028: wide figures whose similarity to their portrait fell to 0.33-0.49, read as "missing" plus
    # "extra face"), 0.013 on all 32 films of the seed (823 keyframes, found 0.991); before the hats 0.02 held.
    assert s["extra_faces_per_keyframe"] <= 0.03 and s["mean_similarity"] > 0.9
    wide = camera_id("wide")
    twice = render_keyframe(KeyframePlan(0, wide, ((2, 0, 0.0), (2, 2, 0.0)), 0.0), 32)
    faces = embedder.faces(twice, camera="wide")
    assert len(faces) == 2 and faces[0].box[0] < faces[1].box[0]
    r = identity_report(faces, [2], names, banks, threshold)
    assert flags(r) == {"Cy": ["doubled"]}
    other = render_keyframe(KeyframePlan(0, wide, ((4, 1, 0.0),), 0.0), 32)
    r = identity_report(embedder.faces(other, camera="extreme_wide"), [2], names, banks, threshold)
    assert flags(r) == {"Cy": ["missing", f"closer_to:{names[4]}"]}, "Eli stands where Cy should"
    assert [r["faces"][i]["nearest"] for i in r["extra"]] == [names[4]]


# ------------------------------------------------------------------------------------------- the manifest


def test_a_report_joins_its_keyframe_entry_through_the_journal_and_leaves_with_a_new_render(tmp_path):
    from moviedreamer_core.project import MovieProject

    project = MovieProject(str(tmp_path), "reports")
    image = np.zeros((16, 16, 3), np.uint8)
    project.save_keyframe(0, image, "sig-a", {"shot": "s1"})
    with pytest.raises(KeyError):
        project.record_keyframe_identity(1, {"ok": True})  # no keyframe 1 yet
    r = report([face(1, 0, 0, 0)], [0])
    project.record_keyframe_identity(0, r)
    again = MovieProject(str(tmp_path), "reports")  # replays the journal (a run killed before compacting)
    assert again.keyframe_entry(0)["identity"] == r and again.keyframe_entry(0)["shot"] == "s1"
    again.compact()
    reopened = MovieProject(str(tmp_path), "reports")
    assert reopened.keyframe_entry(0)["identity"] == r and reopened.keyframe_done(0, "sig-a")
    reopened.save_keyframe(0, image, "sig-b", {"shot": "s1"})  # rendered again: the old report no longer describes it
    assert "identity" not in MovieProject(str(tmp_path), "reports").keyframe_entry(0)
    assert reopened.keyframe_entry(5) is None
