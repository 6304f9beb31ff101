"""How many CPU threads the pack's own work uses: decided here, once, and overridable.

On a CPU, torch runs each operation on as many threads as the machine has cores. For the small models of the
toy cinema (a 1.5 M-parameter UNet at 32x32, a 0.1 M-parameter planner) more threads help little (two threads made
the toy demo's movie in 6.7 s against 6.9 s on an idle two-core machine), and on a busy machine they hurt badly:
OpenMP's threads wait for each other by spinning, so when another process holds one of two cores, every operation
waits for a time slice. Measured on two cores with a second CPU-bound process
running: one toy keyframe took 7.0 s with torch's default two threads against 0.7 s with one
(``benchmarks/toycinema_demo_threads.py`` measures the whole demo both ways: 179.6 s against 10.1 s beside a
CPU-bound process).

The rule:

* ``MOVIEDREAMER_THREADS=N`` (environment) sets the threads of the pack's work everywhere it applies;
* a program's ``--threads N`` wins over it for that program;
* otherwise programs built around the toy models (the toy demo) use ``SMALL_MODEL_THREADS`` (one), and the
  graph nodes inside ComfyUI leave torch as the host set it (real SD/Wan models on a CPU do gain from every core).

``torch_threads(n)`` applies a count for a block of work and restores the previous one afterwards (``None``
changes nothing), so a node never leaves the host's process with another setting.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

ENV = "MOVIEDREAMER_THREADS"
#: Threads for the toy cinema's small models (see the module docstring for the measurement).
SMALL_MODEL_THREADS = 1
#: The most threads a count may ask for: far more than any machine's cores, far fewer than crash a process.
MAX_THREADS = 1024


def configured_threads(requested: Optional[int] = None, default: Optional[int] = None) -> Optional[int]:
    """``requested`` (a program's ``--threads``), else ``$MOVIEDREAMER_THREADS``, else ``default`` (``None``: leave
    torch's own setting). A value that is not a whole number from 1 to ``MAX_THREADS`` is an error naming where it
    came from (torch starts whatever it is given: 100,000 threads crashed the process)."""
    if requested is not None:
        if not 1 <= int(requested) <= MAX_THREADS:
            raise ValueError(f"--threads must be from 1 to {MAX_THREADS}, got {requested}")
        return int(requested)
    value = os.environ.get(ENV, "").strip()
    if value:
        if not value.isdigit() or not 1 <= int(value) <= MAX_THREADS:
            raise ValueError(f"{ENV} must be a whole number from 1 to {MAX_THREADS}, got {value[:40]!r}")
        return int(value)
    return default


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run a block with ``threads`` torch intra-op threads (``None``: unchanged), then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
