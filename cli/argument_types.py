"""Numbers typed on the command line, checked where they are parsed.

The pack's programs (``cli/``, and the benchmarks that share their arguments) pass counts and seeds deep into
numpy, torch and the host's executor, where a bad one surfaces as a traceback from inside a library
("expected non-negative integer") or as the host's refusal of a whole workflow. These ``argparse`` types refuse it
first, naming the flag: ``argument --films: must be at least 1, got 0``.
"""

from __future__ import annotations

import argparse
from typing import Callable, Optional

#: The largest seed the host's seed inputs take (``0xffffffffffffffff``); the toy grammar takes any of them too.
SEED_MAX = 2 ** 64 - 1


def whole_number(minimum: int = 1, maximum: Optional[int] = None, why: str = "") -> Callable[[str], int]:
    """An ``argparse`` type: a whole number from ``minimum`` to ``maximum`` (``why`` explains the maximum)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}{f' ({why})' if why else ''}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


def number(minimum: float, maximum: float) -> Callable[[str], float]:
    """An ``argparse`` type: a finite number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not minimum <= value <= maximum:  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be from {minimum:g} to {maximum:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: An ``argparse`` type for seeds: 0 to ``SEED_MAX``.
seed = whole_number(0, SEED_MAX, "the largest seed ComfyUI takes")
