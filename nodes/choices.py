"""Prompt-time checks of choice (combo) inputs and of numeric ranges.

This host checks a V1 node's list inputs against their options, but not a V3 ``io.Combo`` input's: a typo in an
API workflow (``"sampler_name": "eular"``) or a file that is not there would pass validation and fail deep inside
the run. And once a node defines ``validate_inputs(**kwargs)``, the host leaves *all* its inputs to it, min/max
included. So every node of the pack with a ``validate_inputs`` calls ``check_inputs``: a bad value is refused
at once with a node error naming the input, the value and what is allowed.
"""

from __future__ import annotations

import math

#: Choices listed in the message before "(+N more)".
SHOWN = 12


def check_inputs(node_cls, values: dict):
    """``True``, or a message for the first constant value outside its choices or its min/max (linked inputs
    and inputs that were not given are left alone)."""
    for spec in node_cls.define_schema().inputs:
        if spec.id not in values:
            continue
        value = values[spec.id]
        if value is None or isinstance(value, (list, tuple)):
            continue
        options = getattr(spec, "options", None)
        if options and value not in options:
            shown = ", ".join(str(o) for o in options[:SHOWN]) + (f" (+{len(options) - SHOWN} more)" if len(options) > SHOWN else "")
            return f'{spec.id}: "{value}" is not one of the choices: {shown}'
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):  # passes every comparison: a black keyframe, or a
                return f"{spec.id}: {value} is not a number"    # crash that names no field, far into the run
            step = getattr(spec, "step", None)
            if isinstance(value, int) and isinstance(step, int) and step > 1 and value % step:
                return f"{spec.id}: {value} is not a multiple of {step}"
            if low is not None and value < low:
                return f"{spec.id}: {value} is smaller than the minimum {low}"
            if high is not None and value > high:
                return f"{spec.id}: {value} is bigger than the maximum {high}"
    return True
