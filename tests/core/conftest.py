"""Fixtures shared by core test modules.

``tiny_planner_run`` is the one trained planner of the core suite: the shipped ``tiny`` config trained by the
pack's own scale trainer (``moviedreamer_core.train``) on the synthetic story world, written to and read back from
the pack's planner file. test_planner_learning.py judges what it learned and test_train_scale.py how it was
trained; training it once for both saves a minute and a half of the suite.
"""

from __future__ import annotations

import json
import os
import time

import pytest

#: The synthetic world's embedding spaces (small, so the tiny planner learns it in a few hundred steps).
SPACES = dict(text_space={"encoder": "synthetic", "dim": 16}, identity_space={"encoder": "synthetic", "dim": 8},
              token_space={"source": "synthetic", "K": 2, "D": 8})
N_TRAIN, N_VAL = 600, 40
TINY_STEPS = 500  # the shipped tiny config's own budget


@pytest.fixture(scope="session")
def synthetic_films(tmp_path_factory):
    """The synthetic story world written as a dataset folder: 600 training stories (seed 1), 40 held-out (seed 2).
    Returns ``(folder, world, held-out movie names)``."""
    from moviedreamer_core.planner.synthetic import SyntheticWorld, WorldConfig
    from moviedreamer_core.planner.train import save_movie, write_index

    folder = str(tmp_path_factory.mktemp("synthetic_films"))
    world = SyntheticWorld(WorldConfig(), seed=0)
    names, val = [], []
    for tag, n, seed in (("train", N_TRAIN, 1), ("val", N_VAL, 2)):
        for i, (story, _) in enumerate(world.stories(n, seed=seed)):
            name = f"movies/{tag}_{i:04d}.safetensors"
            save_movie(os.path.join(folder, name), story, SPACES)
            names.append(name)
            if tag == "val":
                val.append(name)
    write_index(folder, names, SPACES)
    return folder, world, val


@pytest.fixture(scope="session")
def tiny_planner_run(synthetic_films, tmp_path_factory):
    """The shipped tiny config trained on ``synthetic_films`` (seed 0, held-out evaluation every 250 steps).
    Returns a dict: ``history`` (one record per step), ``planner`` (the written file), ``model`` (that file loaded
    as MovieDreamerPlannerLoader loads it), ``world``, ``held`` (the held-out stories with their truth) and
    ``seconds``."""
    from moviedreamer_core.planner import load_planner
    from moviedreamer_core.planner.synthetic import SyntheticWorld, WorldConfig
    from moviedreamer_core.train import load_config, run

    folder, world, val = synthetic_films
    out = tmp_path_factory.mktemp("tiny_planner_run")
    started = time.time()
    result = run(load_config("tiny", ["data.path=" + folder, f"data.val_movies={json.dumps(val)}",
                                      "output.dir=" + str(out / "run"), "checkpoint.every=0", "eval.every=250"]), log=None)
    seconds = time.time() - started
    held = SyntheticWorld(WorldConfig(), seed=0).stories(N_VAL, seed=2)
    return {"history": result["history"], "planner": result["planner"], "model": load_planner(result["planner"]).eval(),
            "world": world, "held": held, "seconds": seconds}
