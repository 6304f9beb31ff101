"""A planner trained on films of one style keeps that style and plans every script in it
(``PlannerConfig.fixed_style``, ``KeyframePlanner.planning_story``, ``planner.train.shared_style``).

Why: the toy cinema's planner was trained on one style sentence; a user's script without it, or with a style of its
own, was an input it had never seen, and it planned two or three figures for one character
(``tests/host/test_toycinema.py``, hand-written scripts). A style that never varied in training carries nothing the
planner could have learnt to read; planning in it is what the planner was trained to do.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from moviedreamer_core.embeds import SEGMENTS
from moviedreamer_core.planner import load_planner, plan_given_history, plan_tokens, read_planner_config, save_planner
from moviedreamer_core.planner.synthetic import SyntheticWorld, WorldConfig
from moviedreamer_core.planner.train import FIXED_STYLE_MESSAGE, main as train_main, save_movie, shared_style, write_index

from .test_planner import SPACES, random_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STYLE = SEGMENTS.index("style")


def stories(n: int, seed: int = 5) -> list:
    return [story for story, _ in SyntheticWorld(WorldConfig(), seed=0).stories(n, seed=seed)]


def styled(story, style: torch.Tensor):
    text = story.keyframe_text.clone()
    text[:, STYLE] = style
    return dataclasses.replace(story, style=style, keyframe_text=text)


def test_a_fixed_style_planner_plans_every_script_in_its_training_style(tmp_path):
    story = stories(1)[0]
    model = random_model(fixed_style=True)
    trained = torch.randn(16, generator=torch.Generator().manual_seed(1))
    model.fixed_style.copy_(trained)
    own = plan_tokens(model, styled(story, trained), seed=3)
    for other in (torch.zeros(16), torch.randn(16, generator=torch.Generator().manual_seed(2))):
        assert torch.equal(plan_tokens(model, styled(story, other), seed=3), own)  # header and every keyframe
    story.tokens = own
    assert torch.equal(plan_given_history(model, styled(story, torch.zeros(16))),
                       plan_given_history(model, styled(story, trained)))
    # the style is in the file (a tensor and the config's flag) and comes back
    save_planner(model, str(tmp_path / "p.safetensors"))
    assert read_planner_config(str(tmp_path / "p.safetensors")).fixed_style
    loaded = load_planner(str(tmp_path / "p.safetensors"))
    assert torch.equal(loaded.fixed_style, trained)
    assert torch.equal(plan_tokens(loaded, styled(story, torch.zeros(16)), seed=3), own)
    # a planner without it reads the script's style (the test can fail: the style moves the plan)
    free = random_model()
    assert not free.cfg.fixed_style and not hasattr(free, "fixed_style")
    assert not torch.equal(plan_tokens(free, styled(story, trained), seed=3),
                           plan_tokens(free, styled(story, torch.zeros(16)), seed=3))


def test_shared_style_is_the_one_style_of_all_films_or_none():
    a, b = torch.randn(16), torch.randn(16)
    assert torch.equal(shared_style([a, a + 1e-6, a]), a)  # one sentence encoded in other batches
    assert shared_style([a, a, b]) is None and shared_style([]) is None

    def lazily():
        yield a
        yield b
        raise AssertionError("read past the first difference")

    assert shared_style(lazily()) is None


def _dataset(folder, styles):
    (folder / "movies").mkdir(parents=True)
    names = []
    for i, (story, style) in enumerate(zip(stories(len(styles)), styles)):
        names.append(f"movies/m{i}.safetensors")
        save_movie(str(folder / names[-1]), styled(story, style), SPACES)
    write_index(str(folder), names, SPACES)
    return folder


def test_both_trainers_keep_the_style_of_films_that_share_one(tmp_path, capsys):
    from moviedreamer_core.train import load_config, run

    one, other = torch.randn(16, generator=torch.Generator().manual_seed(7)), torch.zeros(16)
    same = _dataset(tmp_path / "same", [one, one, one])
    mixed = _dataset(tmp_path / "mixed", [one, other, one])
    for data, fixed in ((same, True), (mixed, False)):
        out = tmp_path / f"{data.name}.safetensors"
        assert train_main(["--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2",
                           "--max-keyframes", "4"]) == 0
        assert (FIXED_STYLE_MESSAGE in capsys.readouterr().out) is fixed
        model = load_planner(str(out))
        assert model.cfg.fixed_style is fixed and (not fixed or torch.equal(model.fixed_style, one))
        logged = []
        run(load_config("tiny", [f"data.path={data}", "data.val_fraction=0", f"output.dir={tmp_path / data.name}",
                                 "train.steps=2", "train.batch_size=2", "checkpoint.every=0", "eval.every=0"]),
            log=logged.append)
        model = load_planner(str(tmp_path / data.name / "planner.safetensors"))
        assert model.cfg.fixed_style is fixed and (not fixed or torch.equal(model.fixed_style, one))
        assert (FIXED_STYLE_MESSAGE in logged) is fixed, logged


def test_a_checkpoint_from_before_the_style_was_kept_is_refused_in_words(tmp_path):
    """A scale-training checkpoint written by an earlier release has no ``fixed_style`` tensor: resuming it was a
    ``RuntimeError: Missing key(s) in state_dict`` traceback from accelerate; now a line saying what to do."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from moviedreamer_core.train import load_config, run
    from moviedreamer_core.train.config import ConfigError

    one = torch.randn(16, generator=torch.Generator().manual_seed(7))
    data = _dataset(tmp_path / "same", [one, one])
    settings = [f"data.path={data}", "data.val_fraction=0", f"output.dir={tmp_path / 'run'}", "train.batch_size=2",
                "checkpoint.every=1", "eval.every=0"]
    run(load_config("tiny", settings + ["train.steps=2"]), log=None)
    weights = tmp_path / "run" / "checkpoints" / "step_00000001" / "model.safetensors"  # the last one kept
    with safe_open(str(weights), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if not k.endswith("fixed_style")}
    save_file(tensors, str(weights), metadata=meta)  # as an earlier release wrote it
    with pytest.raises(ConfigError, match=r"cannot resume .*step_00000001: it lacks the model's planner\.fixed_style, "
                                          r"written by an earlier release .*checkpoint\.resume=none"):
        run(load_config("tiny", settings + ["train.steps=3"]), log=None)
