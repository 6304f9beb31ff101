"""Prompt-time checks of choice (combo) inputs and of numeric ranges.

This host checks a V1 node's list inputs against their options, but not a V3 ``io.Combo`` input's: a typo in an
API workflow (``"sampler_name": "eular"``) or a file that is not there would pass validation and fail deep inside
the run. And once a node defines ``validate_inputs(**kwargs)``, the host leaves *all* its inputs to it, min/max
included. So every node of the pack with a ``validate_inputs`` calls ``check_inputs``: a bad value is refused
at once with a node error naming the input, the value and what is allowed, shown under that input alone
(``ReportedOnce``).
"""

from __future__ import annotations

import inspect
import math

from comfy_api.latest import io

from ..moviedreamer_core.script.problems import REPORT_POINTER

#: Choices listed in the message before "(+N more)".
SHOWN = 12


def check_inputs(node_cls, values: dict):
    """``True``, or a message for the first constant value outside its choices or its min/max (linked inputs
    and inputs that were not given are left alone), reported under that input (``ReportedOnce``)."""
    found = first_problem(node_cls, values)
    return True if found is True else ReportedOnce(found[1], list(values), found[0])


def reported_under(values: dict, place: str, text: str) -> "ReportedOnce":
    """A ``validate_inputs`` answer of the node's own (``text``) shown under the input ``place`` alone."""
    return ReportedOnce(text, list(values), place)


def first_problem(node_cls, values: dict):
    """``True``, or ``(input name, message)`` for the first constant value outside its choices or its min/max."""
    for spec in node_cls.define_schema().inputs:
        if spec.id not in values:
            continue
        value = values[spec.id]
        if value is None or isinstance(value, (list, tuple)):
            continue
        options = getattr(spec, "options", None)
        if options and value not in options:
            shown = ", ".join(str(o) for o in options[:SHOWN]) + (f" (+{len(options) - SHOWN} more)" if len(options) > SHOWN else "")
            return spec.id, f'{spec.id}: "{value}" is not one of the choices: {shown}'
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):  # passes every comparison: a black keyframe, or a
                return spec.id, f"{spec.id}: {value} is not a number"  # crash naming no field, far into the run
            step = getattr(spec, "step", None)
            if isinstance(value, int) and isinstance(step, int) and step > 1 and value % step:
                return spec.id, f"{spec.id}: {value} is not a multiple of {step}"
            if low is not None and value < low:
                return spec.id, f"{spec.id}: {value} is smaller than the minimum {low}"
            if high is not None and value > high:
                return spec.id, f"{spec.id}: {value} is bigger than the maximum {high}"
    return True


class ReportedOnce(str):
    """A ``validate_inputs`` answer that the host shows under one input of the node, not under each.

    The host (``execution.validate_inputs``) turns a failed ``validate_inputs`` into one node error per input
    it passed to the function, in the order it passed them, each error carrying ``str(answer)``. A report of
    50 script problems would so be sent (and logged) once per input of ScriptEncode. This string spells the
    report out when the host formats it for the input ``place``, and points there from the other inputs.
    """

    def __new__(cls, text: str, order: list[str], place: str):
        self = super().__new__(cls, text)
        self._order = order
        self._place = place if place in order else (order[0] if order else place)
        self._formatted = 0
        return self

    def __str__(self) -> str:
        n, self._formatted = self._formatted, self._formatted + 1
        if n < len(self._order) and self._order[n] != self._place:
            return f"{REPORT_POINTER}{self._place}"
        return str.__str__(self)


def validated_widgets_only(node_cls):
    """Class decorator: the node's ``validate_inputs(cls, **kwargs)`` is declared to take the node's widget inputs
    (numbers, texts, choices, switches) and nothing else.

    The host reads the function's parameters (``inspect.getfullargspec``): with ``**kwargs`` it passes every input and
    puts a refusal under each of them, so the window circled the node's linked sockets (model, vae, storyboard, ...)
    in red for a wrong ``end_percent`` (an audit), and the error list named every input. Declared this way, the host
    passes and marks only the widgets (``ReportedOnce`` then shows the message under the wrong one and points there
    from the others), and still checks the sockets' types itself. The function itself is unchanged."""
    function = node_cls.__dict__["validate_inputs"].__func__
    names = [spec.id for spec in node_cls.define_schema().inputs if isinstance(spec, io.WidgetInput)]
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    function.__signature__ = inspect.Signature([inspect.Parameter("cls", plain)]
                                               + [inspect.Parameter(n, plain, default=None) for n in names])
    return node_cls
