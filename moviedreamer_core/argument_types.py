"""Numbers typed on the command line, checked where they are parsed.

The pack's programs (``cli/``, the benchmarks, the ``python -m`` programs of ``moviedreamer_core``) pass counts,
seeds and thresholds deep into numpy, torch and the host's executor, where a bad one surfaces as a traceback from
inside a library ("expected non-negative integer"), as the host's refusal of a whole workflow or as nothing at all
(a NaN threshold). These ``argparse`` types refuse it first, naming the flag: ``argument --films: must be at least
1, got 0``. Standard library only and no relative imports: ``cli/`` loads this file before the pack is importable
(``host_library.core_module``).
"""

from __future__ import annotations

import argparse
import os
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


def number(minimum: float, maximum: float, *, above: bool = False, unit: str = "") -> Callable[[str], float]:
    """An ``argparse`` type: a number from ``minimum`` (or, with ``above``, more than it) to ``maximum``; NaN and
    infinities are refused. ``unit`` names what it counts ("seconds")."""
    what = f"a number of {unit}" if unit else "a number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        low = value > minimum if above else value >= minimum
        if not (low and value <= maximum):  # NaN fails both
            lower = f"more than {minimum:g}" if above else f"from {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {what} {lower} {'and at most' if above else 'to'} {maximum:g}, "
                                             f"got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: An ``argparse`` type for seeds: 0 to ``SEED_MAX``.
seed = whole_number(0, SEED_MAX, "the largest seed ComfyUI takes")


def frame_size(minimum: int = 16, maximum: int = 8192, multiple: int = 8) -> Callable[[str], tuple]:
    """An ``argparse`` type: ``WIDTHxHEIGHT`` in pixels, each side from ``minimum`` to ``maximum`` and a multiple of
    ``multiple`` (the latent grid of SD1.5/SDXL VAEs; IdentityDiffusionRender's width and height take the same)."""

    def parse(text: str) -> tuple:
        parts = text.lower().split("x")
        try:
            width, height = (int(v) for v in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels (e.g. 1024x576), got {text!r}") from None
        for name, value in (("width", width), ("height", height)):
            if not minimum <= value <= maximum or value % multiple:
                raise argparse.ArgumentTypeError(f"{name} must be a multiple of {multiple} from {minimum} to "
                                                 f"{maximum}, got {value}")
        return width, height

    parse.__name__ = "size"
    return parse


def output_file(text: str) -> str:
    """An ``argparse`` type: a file a long run writes at its end (``--json``), checked before the run: its folder must
    exist and be writable and it must not be a folder (else the figures of an hour's run were lost at the last line)."""
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {folder}")
    return text


output_file.__name__ = "file"


def output_folder(text: str) -> str:
    """An ``argparse`` type: a folder a program writes into (made when missing), checked before any work: not an
    existing file, and its nearest existing folder writable."""
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {existing}")
    return text


output_folder.__name__ = "folder"
