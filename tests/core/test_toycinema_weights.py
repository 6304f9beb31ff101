"""The toy cinema's shipped files: small, safetensors, and trained in one consistent set of spaces.

Every file is the output of ``cli/toycinema_train.py``; a planner or renderer trained against another
tokenizer or identity embedder would be refused by the nodes at run time, so the set is checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

WEIGHTS = Path(__file__).resolve().parents[2] / "moviedreamer_core" / "toycinema" / "weights"
FILES = {"toycinema_tokenizer.safetensors", "toycinema_identity.safetensors", "toycinema_probe.safetensors",
         "toycinema_unet.safetensors", "moviedreamer/toycinema_renderer.safetensors",
         "moviedreamer/toycinema_planner.safetensors"}


def test_every_shipped_file_is_there_in_safetensors_and_all_fit_in_25_mb():
    found = {str(p.relative_to(WEIGHTS)).replace(os.sep, "/") for p in WEIGHTS.rglob("*") if p.is_file()}
    assert FILES <= found, f"missing: {sorted(FILES - found)} (run python cli/toycinema_train.py)"
    assert {f for f in found if not f.endswith(".safetensors")} <= {"README.md"}
    total = sum((WEIGHTS / f).stat().st_size for f in found)
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MB"
    for f in FILES:
        with safe_open(str(WEIGHTS / f), framework="pt") as st:
            assert st.metadata(), f"{f} carries no configuration"


def test_planner_and_renderer_were_trained_in_the_shipped_tokenizer_and_identity_spaces():
    from moviedreamer_core.planner.checkpoint import load_planner
    from moviedreamer_core.renderer import load_renderer
    from moviedreamer_core.toycinema.identity import ToyIdentityEmbedder
    from moviedreamer_core.toycinema.tokenizer import ToyTokenizer

    if not (WEIGHTS / "toycinema_tokenizer.safetensors").is_file():
        pytest.fail("the toy weights are missing (run python cli/toycinema_train.py)")
    tokens = ToyTokenizer.load(str(WEIGHTS / "toycinema_tokenizer.safetensors")).space
    identity = ToyIdentityEmbedder.load(str(WEIGHTS / "toycinema_identity.safetensors")).space
    renderer = load_renderer(str(WEIGHTS / "moviedreamer" / "toycinema_renderer.safetensors"))
    planner = load_planner(str(WEIGHTS / "moviedreamer" / "toycinema_planner.safetensors"))
    assert renderer.cfg.tokens == tokens and renderer.cfg.identity == identity
    assert planner.cfg.token_space == tokens.to_dict()
    assert planner.cfg.identity_space == identity.to_dict()
    assert "minilm" in planner.cfg.text_space["encoder"].lower()  # ScriptEncode's built-in text encoder
    assert planner.cfg.inputs == ["camera", "mentions"] and planner.camera_emb is not None  # the shot's camera reaches it
    assert planner.mention_in is not None  # and what each action says of each character on screen


def test_the_planner_plans_in_the_toy_style_it_was_trained_on():
    """Every toy film has one style sentence (``film_script.STYLE``): the shipped planner keeps its embedding
    (``PlannerConfig.fixed_style``) and plans every script in it, whatever style the script writes."""
    from moviedreamer_core.planner.checkpoint import load_planner
    from moviedreamer_core.sentence_encoders import transformers_text_encoder
    from moviedreamer_core.toycinema.film_script import STYLE

    planner = load_planner(str(WEIGHTS / "moviedreamer" / "toycinema_planner.safetensors"))
    assert planner.cfg.fixed_style
    style = transformers_text_encoder("minilm").encode([STYLE])[0].float()
    assert torch.allclose(planner.fixed_style, style, atol=1e-4)


def test_the_planner_plans_each_scene_as_a_training_sentence_of_the_same_place():
    """The shipped planner keeps the distinct scene sentences of its 300 training films (``PlannerConfig.snap_scenes``,
    ``planner/scene_bank.py``): every one of them is in its bank, and every scene sentence of the development films,
    held-out phrasings included, is planned as a training sentence of its own place (checked against the films'
    ground truth, not the planner's reading)."""
    from moviedreamer_core.planner.checkpoint import load_planner
    from moviedreamer_core.planner.scene_bank import snap_to_bank, unseen_scenes
    from moviedreamer_core.sentence_encoders import transformers_text_encoder
    from moviedreamer_core.toycinema import grammar

    planner = load_planner(str(WEIGHTS / "moviedreamer" / "toycinema_planner.safetensors"))
    assert planner.cfg.snap_scenes and planner.cfg.scene_bank == 84 and planner.scene_bank.shape == (84, 384)
    text = transformers_text_encoder("minilm")

    def scenes(films) -> dict:
        return {shot.scene: shot.location for film in films for shot in film.shots}

    trained = scenes(grammar.generate_films(1000, 300, phrasings="train"))  # cli/toycinema_train.py's TRAIN_SEED
    assert len(trained) == 84
    trained_rows = text.encode(list(trained)).float()
    assert unseen_scenes(trained_rows, planner.scene_bank) == 0
    place_of_row = {}
    for row, place in zip(trained_rows, trained.values()):
        place_of_row[int((planner.scene_bank - row).abs().amax(-1).argmin())] = place
    development = scenes(grammar.generate_films(9000, 32))  # HELD_OUT_SEED
    new = [s for s in development if s not in trained]
    assert len(new) >= 20, "the development films use held-out phrasings"
    rows = text.encode(list(development)).float()
    snapped = snap_to_bank(rows, planner.scene_bank)
    wrong = [s for s, row, place in zip(development, snapped, development.values())
             if place_of_row[int((planner.scene_bank - row).abs().amax(-1).argmin())] != place]
    assert not wrong, wrong


def test_the_planner_plans_each_empty_shot_with_an_empty_shot_action_of_its_training_films():
    """The shipped planner keeps the distinct actions of its training films' keyframes with nobody on screen
    (``PlannerConfig.snap_empty``, ``planner/scene_bank.py``): each is in its bank, every one of them says nobody is
    there, and a user's empty shot in other words is planned with one of them naming the keyframe's own place or none
    (by action and scene together; by the action alone, "The shadows grow longer." in the desert took the forest's)."""
    from moviedreamer_core.planner.checkpoint import load_planner
    from moviedreamer_core.planner.scene_bank import ACTION, SCENE, snap_empty_actions, unseen_scenes
    from moviedreamer_core.sentence_encoders import transformers_text_encoder
    from moviedreamer_core.toycinema import grammar

    planner = load_planner(str(WEIGHTS / "moviedreamer" / "toycinema_planner.safetensors"))
    assert planner.cfg.snap_empty and planner.cfg.empty_bank == 16 and planner.empty_bank.shape == (16, 384)
    text = transformers_text_encoder("minilm")
    films = grammar.generate_films(1000, 300, phrasings="train")  # cli/toycinema_train.py's TRAIN_SEED
    empty = sorted({a for film in films for shot in film.shots if not shot.characters for a in shot.actions})
    assert len(empty) == 16
    bank_rows = text.encode(empty).float()
    assert unseen_scenes(bank_rows, planner.empty_bank) == 0 and unseen_scenes(planner.empty_bank, bank_rows) == 0
    said = {int((planner.empty_bank - row).abs().amax(-1).argmin()): sentence for row, sentence in zip(bank_rows, empty)}
    places = {"beach": "a sandy beach", "forest": "a dense forest", "desert": "a hot desert", "snowfield": "a snowy field",
              "meadow": "a green meadow", "city square": "a city square at night"}
    users = ["Morning comes.", "The shadows grow longer.", "It starts to rain.", "Waves roll in and out.",
             "Dawn breaks over the land.", "A bird flies past.", "The city sleeps.", "Leaves drift down slowly."]
    rows = text.encode(users + list(places.values())).float()
    wrong = []
    for p, (place, scene) in enumerate(places.items()):
        story = torch.zeros(len(users), 3, 384)
        story[:, ACTION] = rows[:len(users)]
        story[:, SCENE] = rows[len(users) + p]
        snapped = snap_empty_actions(story, [()] * len(users), planner.empty_bank)[:, ACTION]
        for user, row in zip(users, snapped):
            sentence = said[int((planner.empty_bank - row).abs().amax(-1).argmin())]
            if any(other in sentence for other in places if other != place):
                wrong.append((scene, user, sentence))
    assert not wrong, wrong
