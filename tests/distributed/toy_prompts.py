"""The toy cinema's movie workflow as a distributed prompt (and its single-instance twin), for tests and benchmarks.

The graph is ``workflows/api/moviedreamer_toycinema_distributed_api.json``: the toy cinema workflow whose
ShotAnimate hands its ``preview`` and ``results`` to a DistributedCollector, and MovieDreamerGather assembles the
movie on the master. ``toy_prompt`` swaps in another script, project name or ``master_renders``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

PACK = Path(__file__).resolve().parents[2]
WORKFLOW = PACK / "workflows" / "api" / "moviedreamer_toycinema_distributed_api.json"


def node_of(prompt: dict, class_type: str) -> str:
    ids = [k for k, v in prompt.items() if v["class_type"] == class_type]
    assert len(ids) == 1, f"{class_type}: {ids}"
    return ids[0]


def toy_prompt(project: str, script: str | None = None, master_renders: bool = True, collector: bool = True) -> dict:
    """The distributed toy movie prompt; ``collector=False`` wires ShotAnimate's results straight into the gather
    node (the same movie on one instance)."""
    prompt = copy.deepcopy(json.loads(WORKFLOW.read_text()))
    for class_type in ("IdentityDiffusionRender", "ShotAnimate", "MovieDreamerGather", "MovieDreamerStoryboardSheet"):
        prompt[node_of(prompt, class_type)]["inputs"]["project_name"] = project
    for class_type in ("IdentityDiffusionRender", "ShotAnimate"):
        prompt[node_of(prompt, class_type)]["inputs"]["master_renders"] = master_renders
    if script is not None:
        prompt[node_of(prompt, "ScriptEncode")]["inputs"]["script"] = script
    if not collector:
        col = node_of(prompt, "DistributedCollector")
        animate = node_of(prompt, "ShotAnimate")
        prompt[node_of(prompt, "MovieDreamerGather")]["inputs"]["results"] = [animate, 3]
        del prompt[col]
    return prompt
