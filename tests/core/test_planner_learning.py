"""Proof that the planner learns (MovieDreamer section 3.3), in a synthetic story world with known truth.

The shipped ``tiny`` config is trained for its 500 steps by the pack's own trainer (``tiny_planner_run`` in
tests/core/conftest.py, shared with test_train_scale.py; about a minute and a half on two CPU cores), read back
from the planner file it writes, and judged on held-out stories it never saw.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from moviedreamer_core.planner import plan_tokens
from moviedreamer_core.planner.train import evaluate, teacher_forced_means

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # judging a tiny model gains nothing from more threads


@pytest.fixture(scope="module")
def trained(tiny_planner_run):
    run = tiny_planner_run
    return run["model"], run["world"], run["held"], run["history"]


def test_training_loss_falls(trained):
    _, _, _, history = trained
    first = sum(h["loss"] for h in history[:20]) / 20
    last = sum(h["loss"] for h in history[-20:]) / 20
    assert last < 0.6 * first, (first, last)


def test_beats_no_history_and_no_script_baselines(trained):
    model, _, held, _ = trained
    stories = [s for s, _ in held]
    full = evaluate(model, stories)
    no_history = evaluate(model, stories, history=False)
    no_script = evaluate(model, stories, script=False)
    assert full < 0.5 * no_history, (full, no_history)
    assert full < 0.6 * no_script, (full, no_script)


def test_swapping_identities_swaps_the_identity_part(trained):
    """Swap the identity banks of characters 0 and 1: wherever one of them is alone on screen, the planner's
    expected identity token moves by W_id (id_other - id_self), i.e. it follows the face, not the slot."""
    model, world, held, _ = trained
    agreements = []
    for story, info in held:
        swapped = dataclasses.replace(story, identity_banks=[story.identity_banks[1], story.identity_banks[0],
                                                             *story.identity_banks[2:]])
        before, after = teacher_forced_means(model, story), teacher_forced_means(model, swapped)
        ids = info["identities"]
        for i, cast in enumerate(story.keyframe_characters):
            if cast in ((0,), (1,)):
                expected = world.W_id @ (ids[1 - cast[0]] - ids[cast[0]])
                agreements.append(torch.nn.functional.cosine_similarity(after[i, 0] - before[i, 0], expected, dim=0))
    assert len(agreements) >= 30
    assert float(torch.stack(agreements).mean()) > 0.75


def test_guidance_increases_adherence_to_the_script(trained):
    model, _, held, _ = trained

    def adherence(scale):
        values = []
        for story, info in held[:20]:
            tokens = plan_tokens(model, story, seed=0, temperature=0, guidance=scale, window=None)
            values.append(torch.nn.functional.cosine_similarity(tokens.flatten(), info["script_part"].flatten(), dim=0))
        return float(torch.stack(values).mean())

    g1, g3 = adherence(1.0), adherence(3.0)
    assert g3 > g1 + 0.03, (g1, g3)
