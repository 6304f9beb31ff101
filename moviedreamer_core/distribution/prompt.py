"""The on-prompt step: tell our nodes who they are in a ComfyUI-Distributed run.

ComfyUI-Distributed's orchestrator rewrites the prompt for every participant and fills the hidden inputs of its
own nodes only: each ``DistributedCollector`` gets the job id (``multi_job_id``), ``is_worker``, the worker's id
and the enabled workers. It runs the whole prompt on the master and, on every worker, only what lies upstream of
its collectors. When such a prompt reaches a participant's ``/prompt`` queue, this step (registered with the
host's ``PromptServer.add_on_prompt_handler`` by ``nodes/host.py``) reads the collector and writes the same facts
into the ``distributed`` input of our nodes, as one JSON string (``participation.Participation``).

A prompt without a collector that has a job id (no ComfyUI-Distributed, or queued with the ordinary Queue
button) is returned with any ``distributed`` value removed: the pack then behaves as on one instance.
"""

from __future__ import annotations

import json

from .participation import MASTER, MAX_PARTICIPANTS, Participation
from .split import ANIMATIC_SECOND_COST, VIDEO_MODEL_SECOND_COST

COLLECTOR = "DistributedCollector"
#: Our nodes that take a share (they read ``master_renders``) and the master's gathering node.
SHARING_NODES = ("IdentityDiffusionRender", "ShotAnimate")
GATHER_NODE = "MovieDreamerGather"
INPUT = "distributed"


def _collector(prompt: dict):
    """The inputs of the collector with the lowest node id among those ComfyUI-Distributed gave a job id."""
    found = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("class_type") != COLLECTOR:
            continue
        inputs = node.get("inputs") or {}
        job = inputs.get("multi_job_id")
        if isinstance(job, str) and job and not inputs.get("pass_through"):
            found.append((str(node_id), inputs))
    if not found:
        return None
    return min(found, key=lambda item: (len(item[0]), item[0]))[1]


def participation_for(prompt: dict) -> Participation | None:
    """Who this participant is, read from the prompt's collector (``None``: not a distributed run)."""
    inputs = _collector(prompt)
    if inputs is None:
        return None
    try:
        enabled = json.loads(inputs.get("enabled_worker_ids") or "[]")
    except (TypeError, ValueError):
        enabled = []
    workers = []
    for w in enabled if isinstance(enabled, list) else []:
        w = str(w)
        if w not in workers and w != MASTER:
            workers.append(w)
    workers = workers[:MAX_PARTICIPANTS - 1]
    is_worker = inputs.get("is_worker") is True
    me = str(inputs.get("worker_id") or "") if is_worker else MASTER
    master_renders = all(
        (node.get("inputs") or {}).get("master_renders", True) is not False
        for node in prompt.values()
        if isinstance(node, dict) and node.get("class_type") in SHARING_NODES
    )
    if not workers:  # nobody else answered: the master makes everything
        master_renders = True
    participants = ([MASTER] if master_renders else []) + workers
    job = str(inputs["multi_job_id"])
    # what a second of video costs: ShotAnimate with a video model connected (backend auto) or the animatic
    video_model = any(
        (node.get("inputs") or {}).get("backend", "auto") != "animatic" and isinstance((node.get("inputs") or {}).get("model"), list)
        for node in prompt.values()
        if isinstance(node, dict) and node.get("class_type") == "ShotAnimate"
    )
    # the job id of one collector is "<run prefix>_<node id>": the prefix is the run's, the same on every collector
    job = job.rsplit("_", 1)[0] if "_" in job else job
    return Participation(job[:128], me, tuple(participants), master_renders,
                         VIDEO_MODEL_SECOND_COST if video_model else ANIMATIC_SECOND_COST)


def annotate_prompt(prompt: dict) -> dict:
    """Write (or remove) the ``distributed`` input of our nodes in ``prompt``, in place; returns it."""
    annotate(prompt)
    return prompt


def annotate(prompt: dict) -> Participation | None:
    """``annotate_prompt``, returning the participation it wrote (``None``: not a distributed run)."""
    if not isinstance(prompt, dict):
        return None
    try:
        who = participation_for(prompt)
    except Exception:  # a malformed prompt: validation reports it, this step stays out of the way
        who = None
    value = who.to_json() if who is not None else None
    for node in prompt.values():
        if not isinstance(node, dict) or node.get("class_type") not in (*SHARING_NODES, GATHER_NODE):
            continue
        inputs = node.setdefault("inputs", {})
        if not isinstance(inputs, dict):
            continue
        if value is None:
            inputs.pop(INPUT, None)
        else:
            inputs[INPUT] = value
    return who
