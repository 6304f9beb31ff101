"""A planner can keep its training films' scene sentences and plan each script's scene as the nearest of them
(``PlannerConfig.snap_scenes`` / ``scene_bank``, ``planner/scene_bank.py``, ``KeyframePlanner.planning_story``).

Why: the toy cinema's planner planned a held-out phrasing of a place ("a stretch of shore by the sea") as another place
in about one keyframe in twenty, although the sentence encoder puts it nearest a training sentence of its own place.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from moviedreamer_core.embeds import SEGMENTS
from moviedreamer_core.planner import load_planner, plan_given_history, plan_tokens, read_planner_config, save_planner
from moviedreamer_core.planner.config import PlannerConfig, preset
from moviedreamer_core.planner.scene_bank import (MAX_SCENE_BANK, NO_EMPTY_MESSAGE, SNAP_EMPTY_MESSAGE,
                                                  SNAP_SCENES_MESSAGE, TooManyScenes, distinct_empty_actions,
                                                  distinct_scenes, empty_actions, movie_empty_actions, movie_scenes,
                                                  snap_empty_actions, snap_to_bank, unseen_scenes)
from moviedreamer_core.planner.train import main as train_main, save_movie, write_index

from .test_planner import SPACES, random_model
from .test_planner_fixed_style import stories

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCENE = SEGMENTS.index("scene")
ACTION = SEGMENTS.index("action")


def with_scenes(story, scenes: torch.Tensor):
    text = story.keyframe_text.clone()
    text[:, SCENE] = scenes
    return dataclasses.replace(story, keyframe_text=text)


def test_distinct_scenes_keeps_each_sentence_once_in_order_and_refuses_an_open_world():
    a, b, c = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    bank = distinct_scenes([torch.stack([a, b, a + 1e-6]), torch.stack([b, c])])  # one sentence from another batch
    assert torch.equal(bank, torch.stack([a, b, c]))
    with pytest.raises(TooManyScenes, match=r"planner\.snap_scenes: .* more than 2 different scene sentences.*snap_scenes=false"):
        distinct_scenes([torch.stack([a, b, c])], limit=2)
    with pytest.raises(TooManyScenes, match="no keyframes"):
        distinct_scenes([torch.zeros(0, 16)])
    assert MAX_SCENE_BANK >= 84  # the toy world's


def test_snap_to_bank_is_the_nearest_row_by_cosine_and_counts_the_new_ones():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    scenes = torch.tensor([[3.0, 0.2], [0.1, 0.5], [-0.2, -0.3], [0.0, 1.0]])
    assert torch.equal(snap_to_bank(scenes, bank), bank[[0, 1, 2, 1]])
    assert torch.equal(snap_to_bank(bank, bank), bank)  # a trained sentence is its own nearest
    assert unseen_scenes(scenes, bank) == 3 and unseen_scenes(bank, bank) == 0
    assert snap_to_bank(torch.zeros(0, 2), bank).shape == (0, 2)
    assert torch.allclose(snap_to_bank(scenes, bank, keep=0.5), bank[[0, 1, 2, 1]] + 0.5 * (scenes - bank[[0, 1, 2, 1]]))


def test_a_planner_with_a_scene_bank_plans_a_new_phrasing_as_the_sentence_it_trained_on(tmp_path):
    story = stories(1)[0]
    trained = story.keyframe_text[:, SCENE].clone()
    bank = distinct_scenes([trained])
    reworded = trained + 0.3 * torch.randn(trained.shape, generator=torch.Generator().manual_seed(4)) * trained.std()
    assert unseen_scenes(reworded, bank) == trained.shape[0]
    assert torch.equal(snap_to_bank(reworded, bank), trained)  # near enough to be read as its own sentence
    model = random_model(snap_scenes=True, scene_bank=len(bank), snap_keep=0.0)
    model.scene_bank.copy_(bank)
    own = plan_tokens(model, story, seed=3)
    assert torch.equal(plan_tokens(model, with_scenes(story, reworded), seed=3), own)
    story.tokens = own
    assert torch.equal(plan_given_history(model, with_scenes(story, reworded)), plan_given_history(model, story))
    # the bank is in the file (a tensor and the config's size) and comes back
    save_planner(model, str(tmp_path / "p.safetensors"))
    assert read_planner_config(str(tmp_path / "p.safetensors")).scene_bank == len(bank)
    loaded = load_planner(str(tmp_path / "p.safetensors"))
    assert torch.equal(loaded.scene_bank, bank)
    assert torch.equal(plan_tokens(loaded, with_scenes(story, reworded), seed=3), own)
    # by default half of a new sentence's own difference from the trained one is kept (``snap_keep``)
    halfway = random_model(snap_scenes=True, scene_bank=len(bank))
    halfway.scene_bank.copy_(bank)
    assert halfway.cfg.snap_keep == 0.5
    planned = halfway.planning_story(with_scenes(story, reworded)).keyframe_text[:, SCENE]
    assert torch.allclose(planned, trained + 0.5 * (reworded - trained))
    assert torch.equal(halfway.planning_story(story).keyframe_text[:, SCENE], trained)  # a trained sentence stays itself
    # a planner without one reads the script's scene as written (the test can fail: the rewording moves the plan)
    free = random_model()
    assert not free.cfg.scene_bank and not hasattr(free, "scene_bank")
    assert not torch.equal(plan_tokens(free, with_scenes(story, reworded), seed=3), plan_tokens(free, story, seed=3))


def with_casts(story, casts: list, empty_action: torch.Tensor = None):
    """``story`` with these on-screen casts, and ``empty_action`` as the action of every keyframe with nobody there."""
    text = story.keyframe_text.clone()
    if empty_action is not None:
        for k, cast in enumerate(casts):
            if not cast:
                text[k, ACTION] = empty_action
    return dataclasses.replace(story.window(0, len(casts)), keyframe_text=text[:len(casts)],
                               keyframe_characters=list(casts))


def test_empty_actions_are_those_of_keyframes_with_nobody_on_screen_and_snap_to_the_nearest():
    text = torch.randn(4, 3, 16, generator=torch.Generator().manual_seed(0))
    casts = [(0,), (), (0, 1), ()]
    assert torch.equal(empty_actions(text, casts), text[[1, 3], ACTION])
    assert empty_actions(text, [(0,)] * 4).shape == (0, 16)
    nobody, empty_field = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    bank = distinct_empty_actions([torch.stack([nobody, nobody + 1e-6]), torch.zeros(0, 16), empty_field[None]])
    assert torch.equal(bank, torch.stack([nobody, empty_field]))
    assert distinct_empty_actions([torch.zeros(0, 16)]).shape[0] == 0  # no empty keyframe: an empty bank, not an error
    with pytest.raises(TooManyScenes, match=r"planner\.snap_empty: .* more than 1 different actions of shots with "
                                            r"nobody on screen.*snap_empty=false"):
        distinct_empty_actions([bank], limit=1)
    text[3, ACTION] = 2.0 * empty_field + 0.1 * nobody  # a new sentence, nearer one of the bank's
    text[3, SCENE] = 0.0  # ... at a scene like neither: the nearer by the action
    snapped = snap_empty_actions(text, casts, bank)
    assert torch.equal(snapped[3, ACTION], empty_field)
    text[1, ACTION] = nobody + 0.2 * empty_field  # a new sentence nearest ``nobody`` by itself,
    text[1, SCENE] = 3.0 * empty_field  # at a place like ``empty_field``: nearest by action and scene together
    cos = torch.nn.functional.cosine_similarity
    assert cos(text[1, ACTION], nobody, dim=0) > cos(text[1, ACTION], empty_field, dim=0)
    assert torch.equal(snap_empty_actions(text, casts, bank)[1, ACTION], empty_field)
    text[1, ACTION] = nobody  # a sentence of the bank stays itself, whatever its scene
    snapped = snap_empty_actions(text, casts, bank)
    assert torch.equal(snapped[1, ACTION], nobody)
    keep = [0, 2]  # keyframes with someone on screen, and every other segment, are as written
    assert torch.equal(snapped[keep], text[keep]) and torch.equal(snapped[:, 1:], text[:, 1:])
    assert snap_empty_actions(text, [(0,)] * 4, bank) is text and snap_empty_actions(text, casts, bank[:0]) is text


def test_a_planner_with_an_empty_bank_plans_an_empty_shot_in_new_words_as_the_empty_shot_it_trained_on(tmp_path):
    story = stories(1)[0]
    casts = [(0,), (), (0, 1), (), (1,)][:story.n_keyframes]
    assert story.n_keyframes >= 5
    nobody = torch.randn(16, generator=torch.Generator().manual_seed(6))  # the training films' one empty-shot action
    trained = with_casts(story, casts, nobody)
    new_words = with_casts(story, casts, torch.randn(16, generator=torch.Generator().manual_seed(7)))
    bank = distinct_empty_actions([empty_actions(trained.keyframe_text, casts)])
    assert bank.shape == (1, 16)
    model = random_model(snap_empty=True, empty_bank=1)
    model.empty_bank.copy_(bank)
    own = plan_tokens(model, trained, seed=3)
    assert torch.equal(plan_tokens(model, new_words, seed=3), own)
    trained.tokens = new_words.tokens = own
    assert torch.equal(plan_given_history(model, new_words), plan_given_history(model, trained))
    # a keyframe with someone on screen keeps its own action: the bank is for empty shots only
    someone = with_casts(story, casts)
    text = someone.keyframe_text.clone()
    text[0, ACTION] = nobody
    assert torch.equal(model.planning_story(dataclasses.replace(someone, keyframe_text=text)).keyframe_text[0], text[0])
    # the bank is in the file and comes back
    save_planner(model, str(tmp_path / "p.safetensors"))
    assert read_planner_config(str(tmp_path / "p.safetensors")).empty_bank == 1
    loaded = load_planner(str(tmp_path / "p.safetensors"))
    assert torch.equal(loaded.empty_bank, bank)
    assert torch.equal(plan_tokens(loaded, new_words, seed=3), own)
    # a planner without one reads the empty shot's action as written (the test can fail: the words move the plan)
    free = random_model()
    assert not free.cfg.empty_bank and not hasattr(free, "empty_bank")
    assert not torch.equal(plan_tokens(free, new_words, seed=3), plan_tokens(free, trained, seed=3))


def test_both_trainers_keep_the_training_films_empty_shot_actions_when_asked(tmp_path, capsys):
    nobody, empty_field, validation_only = _places(3, 21)
    films = [(lambda n: [(0,) if k % 2 else () for k in range(n)], nobody),  # every other keyframe empty
             (lambda n: [() if k == 1 else (0,) for k in range(n)], empty_field),
             (lambda n: [()] * n, validation_only)]
    (tmp_path / "data" / "movies").mkdir(parents=True)
    names, lengths = [], []
    for i, ((casts, action), story) in enumerate(zip(films, stories(3))):
        names.append(f"movies/m{i}.safetensors")
        lengths.append(story.n_keyframes)
        save_movie(str(tmp_path / "data" / names[-1]), with_casts(story, casts(story.n_keyframes), action), SPACES)
    write_index(str(tmp_path / "data"), names, SPACES)
    data = tmp_path / "data"
    assert torch.equal(movie_empty_actions(str(data / names[0])), nobody.expand((lengths[0] + 1) // 2, 16))
    assert torch.equal(movie_empty_actions(str(data / names[2])), validation_only.expand(lengths[2], 16))
    config = tmp_path / "snap.json"
    config.write_text(json.dumps({**dataclasses.asdict(preset("tiny", **SPACES)), "snap_empty": True}))
    out = tmp_path / "simple.safetensors"
    assert train_main(["--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2",
                       "--max-keyframes", "4", "--config", str(config)]) == 0
    assert SNAP_EMPTY_MESSAGE.format(n=3) in capsys.readouterr().out  # this trainer trains on every film
    model = load_planner(str(out))
    assert model.cfg.snap_empty and torch.equal(model.empty_bank, torch.stack([nobody, empty_field, validation_only]))
    for asked in (True, False):
        model, logged = _scale_trained(data, names[2], tmp_path / f"scale_{asked}", "snap_empty", asked)
        if asked:  # the validation film's empty action is not kept
            assert SNAP_EMPTY_MESSAGE.format(n=2) in logged, logged
            assert torch.equal(model.empty_bank, torch.stack([nobody, empty_field]))
        else:
            assert model.cfg.empty_bank == 0 and not any("snap_empty" in line for line in logged)


def test_a_training_set_without_empty_shots_keeps_no_empty_bank(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    names = [f"movies/m{i}.safetensors" for i in range(2)]
    for name, story in zip(names, stories(2)):
        save_movie(str(data / name), with_casts(story, [(0,)] * story.n_keyframes), SPACES)
    write_index(str(data), names, SPACES)
    config = tmp_path / "snap.json"
    config.write_text(json.dumps({**dataclasses.asdict(preset("tiny", **SPACES)), "snap_empty": True}))
    out = tmp_path / "p.safetensors"
    assert train_main(["--data", str(data), "--out", str(out), "--config", str(config), "--steps", "1",
                       "--batch-size", "2", "--max-keyframes", "4"]) == 0
    assert NO_EMPTY_MESSAGE in capsys.readouterr().out
    model = load_planner(str(out))
    assert model.cfg.snap_empty and model.cfg.empty_bank == 0 and not hasattr(model, "empty_bank")


def test_scene_bank_size_is_checked_by_name():
    with pytest.raises(ValueError, match="empty_bank must be a whole number from 0 to 1,048,576, got True"):
        preset("tiny", **SPACES, empty_bank=True)
    with pytest.raises(ValueError, match="scene_bank must be a whole number from 0 to 1,048,576, got -1"):
        preset("tiny", **SPACES, scene_bank=-1)
    with pytest.raises(ValueError, match="snap_keep must be a number from 0 to 1, got 1.5"):
        preset("tiny", **SPACES, snap_keep=1.5)
    assert PlannerConfig.from_dict({**SPACES, "snap_scenes": True, "scene_bank": 3}).scene_bank == 3


def test_a_switch_that_is_not_true_or_false_is_refused_by_name(tmp_path, capsys):
    """A ``--config`` file's ``"snap_empty": "false"`` (text, which Python reads as true) made the quick trainer keep
    the empty-shot bank it was told not to keep; now it is refused, naming the field, as a bad size is."""
    with pytest.raises(ValueError, match="planner config snap_scenes must be true or false, got 1"):
        preset("tiny", **SPACES, snap_scenes=1)
    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    story = stories(1)[0]
    save_movie(str(data / "movies" / "m.safetensors"), with_casts(story, [()] * story.n_keyframes), SPACES)
    write_index(str(data), ["movies/m.safetensors"], SPACES)
    config = tmp_path / "snap.json"
    config.write_text(json.dumps({**dataclasses.asdict(preset("tiny", **SPACES)), "snap_empty": "false"}))
    out = tmp_path / "p.safetensors"
    assert train_main(["--data", str(data), "--out", str(out), "--config", str(config), "--steps", "1"]) == 2
    printed = capsys.readouterr()
    assert "planner config snap_empty must be true or false, got 'false'" in printed.err, printed
    assert SNAP_EMPTY_MESSAGE.format(n=1) not in printed.out and not out.exists()


def _dataset(folder, scenes_per_film):
    (folder / "movies").mkdir(parents=True)
    names = []
    for i, (story, scenes) in enumerate(zip(stories(len(scenes_per_film)), scenes_per_film)):
        names.append(f"movies/m{i}.safetensors")
        save_movie(str(folder / names[-1]), with_scenes(story, scenes(story)), SPACES)
    write_index(str(folder), names, SPACES)
    return folder, names


def _places(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed))


def _scale_trained(data, validation: str, out, flag: str, asked: bool):
    """The scale trainer's planner (two steps) on ``data`` with the film ``validation`` held out and ``planner.<flag>``
    set to ``asked``, and what it logged."""
    from moviedreamer_core.train import load_config, run

    logged = []
    settings = [f"data.path={data}", f"data.val_movies={json.dumps([validation])}", "data.val_fraction=0",
                f"output.dir={out}", "train.steps=2", "train.batch_size=2", "checkpoint.every=0", "eval.every=0",
                f"planner.{flag}={str(asked).lower()}"]
    run(load_config("tiny", settings), log=logged.append)
    return load_planner(str(out / "planner.safetensors")), logged


def test_both_trainers_keep_the_training_films_scenes_when_asked_and_never_the_validation_films(tmp_path, capsys):
    places = _places(3, 11)
    unseen = _places(1, 12)[0]  # only in the validation film

    def cycle(story):
        return places[torch.arange(story.n_keyframes) % 3]

    data, names = _dataset(tmp_path / "data", [cycle, cycle, lambda st: unseen.expand(st.n_keyframes, 16)])
    assert torch.equal(movie_scenes(str(data / names[0])), cycle(stories(1)[0]))
    config = tmp_path / "snap.json"
    config.write_text(json.dumps({**dataclasses.asdict(preset("tiny", **SPACES)), "snap_scenes": True}))
    for asked in (True, False):
        out = tmp_path / f"simple_{asked}.safetensors"
        assert train_main(["--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2",
                           "--max-keyframes", "4"] + (["--config", str(config)] if asked else [])) == 0
        printed = capsys.readouterr().out
        model = load_planner(str(out))
        if asked:  # this trainer trains on every film of the dataset
            assert SNAP_SCENES_MESSAGE.format(n=4) in printed
            assert model.cfg.snap_scenes and torch.equal(model.scene_bank, torch.cat([places, unseen[None]]))
        else:
            assert model.cfg.scene_bank == 0 and not hasattr(model, "scene_bank")
        model, logged = _scale_trained(data, names[2], tmp_path / f"scale_{asked}", "snap_scenes", asked)
        if asked:  # the validation film's scene is not kept: it is what the planner is measured on
            assert SNAP_SCENES_MESSAGE.format(n=3) in logged, logged
            assert torch.equal(model.scene_bank, places)
        else:
            assert model.cfg.scene_bank == 0 and not any("snap_scenes" in line for line in logged)


def test_an_open_world_dataset_is_refused_by_the_field_name(tmp_path, capsys, monkeypatch):
    from moviedreamer_core.planner import scene_bank
    from moviedreamer_core.train import load_config, run
    from moviedreamer_core.train.config import ConfigError

    data, _ = _dataset(tmp_path / "data", [lambda st: _places(st.n_keyframes, 1), lambda st: _places(st.n_keyframes, 2)])
    monkeypatch.setattr(scene_bank, "MAX_SCENE_BANK", 4)  # every keyframe a sentence of its own, more than 4
    monkeypatch.setattr(scene_bank.distinct_scenes, "__defaults__", (4,))
    config = tmp_path / "snap.json"
    config.write_text(json.dumps({**dataclasses.asdict(preset("tiny", **SPACES)), "snap_scenes": True}))
    assert train_main(["--data", str(data), "--out", str(tmp_path / "p.safetensors"), "--config", str(config),
                       "--steps", "1"]) == 2
    assert "error: planner.snap_scenes: the training films have more than 4 different scene sentences" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="planner.snap_scenes: the training films have more than 4"):
        run(load_config("tiny", [f"data.path={data}", "data.val_fraction=0", f"output.dir={tmp_path / 'run'}",
                                 "train.steps=1", "checkpoint.every=0", "eval.every=0", "planner.snap_scenes=true"]), log=None)


def test_a_checkpoint_from_before_the_empty_shots_were_kept_is_refused_in_words(tmp_path):
    """A scale-training checkpoint of a run asking for ``snap_empty`` but written without the ``empty_bank`` tensor (an
    earlier release's) is refused with a line that says what the planner now keeps and what to do, not accelerate's
    ``Missing key(s) in state_dict`` traceback."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from moviedreamer_core.train import load_config, run
    from moviedreamer_core.train.config import ConfigError

    data, _ = _dataset(tmp_path / "data", [lambda st: _places(st.n_keyframes, 1)] * 2)  # stories() have empty shots
    settings = [f"data.path={data}", "data.val_fraction=0", f"output.dir={tmp_path / 'run'}", "train.batch_size=2",
                "checkpoint.every=1", "eval.every=0", "planner.snap_empty=true"]
    run(load_config("tiny", settings + ["train.steps=2"]), log=None)
    weights = tmp_path / "run" / "checkpoints" / "step_00000001" / "model.safetensors"  # the last one kept
    with safe_open(str(weights), framework="pt") as f:
        assert any(k.endswith("empty_bank") for k in f.keys())
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if not k.endswith("empty_bank")}
    save_file(tensors, str(weights), metadata=meta)
    with pytest.raises(ConfigError, match=r"cannot resume .*step_00000001: it lacks the model's planner\.empty_bank, "
                                          r"written by an earlier release \(empty_bank: the planner now keeps the actions "
                                          r"of its training films' shots with nobody on screen\).*checkpoint\.resume=none"):
        run(load_config("tiny", settings + ["train.steps=3"]), log=None)
