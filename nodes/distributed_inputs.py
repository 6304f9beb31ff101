"""The two inputs our sharing nodes take for ComfyUI-Distributed runs, and their checks.

``distributed`` is a socket-only text input that nobody connects: the on-prompt step (``distributed_prompt.py``)
fills it from ComfyUI-Distributed's collector when a prompt arrives through its queue, and removes it otherwise.
``master_renders`` lets the master only orchestrate: off on any of our nodes, and the master renders and animates
nothing while the workers share everything (ComfyUI-Distributed's own "delegate only" mode cuts every wire into
the nodes after its collector, which our gathering step needs).
"""

from __future__ import annotations

from typing import Callable, Sequence

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


def lazy_inputs_wanted(names: Sequence[str], kwargs: dict, distributed, has_work: Callable) -> list[str]:
    """For a sharing node's ``check_lazy_status``: which of its lazy model inputs ``names`` the host should evaluate.
    Every connected one (in ``kwargs`` and still ``None``), except on a distributed participant for which
    ``has_work(participation)`` says there is nothing to make (a master that only orchestrates, a worker with an empty
    share): the loaders that feed them then never run there. A ``distributed`` value that does not parse, or a
    ``has_work`` that raises ValueError, wants them all: ``execute`` says what is wrong."""
    wanted = [n for n in names if n in kwargs and kwargs[n] is None]
    if not wanted or distributed is None:
        return wanted
    try:
        who = parse_participation(distributed)
        return wanted if who is None or has_work(who) else []
    except ValueError:
        return wanted
