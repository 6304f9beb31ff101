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

from ..text_files import loads_json
from .participation import FORMAT, MASTER, MAX_PARTICIPANTS, Participation
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
        enabled = loads_json(inputs.get("enabled_worker_ids") or "[]")
    except (TypeError, ValueError):
        enabled = []
    workers = []
    is_worker = inputs.get("is_worker") is True
    me = str(inputs.get("worker_id") or "") if is_worker else MASTER
    for w in enabled if isinstance(enabled, list) else []:
        w = str(w)
        if w == MASTER:
            raise Refused(f"a worker's id is {MASTER!r}, the master's own name (both would make the master's share "
                          f"into one journal): give worker {w!r} another id in ComfyUI-Distributed's panel "
                          "(its gpu_config.json)")
        if w not in workers:
            workers.append(w)
    if is_worker and me == MASTER:
        raise Refused(f"this worker's id is {MASTER!r}, the master's own name: give worker {me!r} another id in "
                      "ComfyUI-Distributed's panel (its gpu_config.json)")
    workers = workers[:MAX_PARTICIPANTS - 1]
    master_renders = True
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("class_type") not in SHARING_NODES:
            continue
        value = (node.get("inputs") or {}).get("master_renders", True)
        if not isinstance(value, bool):  # the host would read 0 as off and "false" as on: neither is taken
            raise Refused(f"master_renders of node {str(node_id)[:20]} ({node['class_type']}) must be true or false, "
                          f"got {json.dumps(value)[:40]}")
        master_renders = master_renders and value
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


class Refused(ValueError):
    """A distributed run that must not start (a worker named like the master, a ``master_renders`` that is not a
    boolean): ``annotate`` writes the message into ``distributed``, and the nodes' validation refuses the prompt
    with it."""


def annotate_prompt(prompt: dict) -> dict:
    """Write (or remove) the ``distributed`` input of our nodes in ``prompt``, in place; returns it."""
    annotate(prompt)
    return prompt


def annotate(prompt: dict) -> Participation | None:
    """``annotate_prompt``, returning the participation it wrote (``None``: not a distributed run)."""
    if not isinstance(prompt, dict):
        return None
    refused = None
    try:
        who = participation_for(prompt)
    except Refused as e:
        who, refused = None, json.dumps({"format": FORMAT, "refused": str(e)[:1000]}, sort_keys=True)
    except Exception:  # a malformed prompt: validation reports it, this step stays out of the way
        who = None
    value = refused if refused is not None else who.to_json() if who is not None else None
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
