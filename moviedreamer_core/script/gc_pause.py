"""The cyclic garbage collector paused while a script is parsed and checked.

Reading a script of a megabyte builds up to ``MAX_VALUES`` small containers (YAML nodes, dicts, lists, pydantic's
errors, problem entries) that all live until the answer is given. Every 700 new container objects CPython runs a
young-generation collection that walks them, and the older generations follow: half of the work on the largest
scripts was the collector finding nothing to free. Measured on this machine (``tests/core/test_script_hostile.py``'s
worst cases, one process): 5000 shots naming 80,000 unknown characters 1.09 s -> 0.52 s, 200,000 tiny values 0.93
s -> 0.44 s; in the test suite's process, whose heap already held torch and the host, the first of them took 2.0 s
and broke issue #20's two-second promise. Memory stays bounded by the limits (``limits.py``), and the collector runs again as soon as the answer
is made, so nothing is lost but the pauses.

The collector is process-wide state: a pause that finds it already paused (by a caller, or by a check running in
another thread) leaves it as it found it, so it is only switched back on by whoever switched it off.
"""

from __future__ import annotations

import functools
import gc
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def collector_paused(fn: F) -> F:
    """``fn`` runs with the cyclic garbage collector off (when it was on), then the collector is on again."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        was_on = gc.isenabled()
        if was_on:
            gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_on:
                gc.enable()

    return run  # type: ignore[return-value]
