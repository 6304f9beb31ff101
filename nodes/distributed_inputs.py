"""The two inputs our sharing nodes take for ComfyUI-Distributed runs, and their checks.

``distributed`` is a socket-only text input that nobody connects: the on-prompt step (``distributed_prompt.py``)
fills it from ComfyUI-Distributed's collector when a prompt arrives through its queue, and removes it otherwise.
``master_renders`` lets the master only orchestrate: off on any of our nodes, and the master renders and animates
nothing while the workers share everything (ComfyUI-Distributed's own "delegate only" mode cuts every wire into
the nodes after its collector, which our gathering step needs).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..moviedreamer_core.distribution.participation import parse_participation


def distributed_input() -> io.String.Input:
    return io.String.Input(
        "distributed", optional=True, force_input=True,
        tooltip="Leave unconnected. Filled in by ComfyUI-Distributed's queue (this participant's place in a "
        "distributed run: it then makes only its share of the keyframes and shots). Empty on an ordinary queue.")


def master_renders_input() -> io.Boolean.Input:
    return io.Boolean.Input(
        "master_renders", default=True, optional=True,
        tooltip="Distributed runs (ComfyUI-Distributed): on = the master makes a share of the keyframes and shots "
        "like every worker; off = the master only orchestrates and gathers (off on any MovieDreamer node counts). "
        "No effect on an ordinary queue.")


def check(kwargs: dict):
    """``True`` or a message naming the ``distributed`` field (for ``validate_inputs``)."""
    value = kwargs.get("distributed")
    if value is None or isinstance(value, (list, tuple)):
        return True
    try:
        parse_participation(value)
    except ValueError as e:
        return str(e)
    return True
