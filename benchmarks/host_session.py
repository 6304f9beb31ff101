"""The ComfyUI host a benchmark measures in: the real host started in this process (``tests/host/harness.py``
``InProcessHost``) over a scratch folder that is removed afterwards, or, without ``$COMFYUI_PATH``, one line saying
the benchmark was skipped (benchmarks print figures; they do not fail for a missing host)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def host_or_skip(label: str = ""):
    """``with host_or_skip() as host:`` gives an ``InProcessHost``, or ``None`` after printing
    ``<label>skipped: set COMFYUI_PATH to a ComfyUI checkout``."""
    host_root = os.environ.get("COMFYUI_PATH")
    if not host_root:
        print(f"{label}skipped: set COMFYUI_PATH to a ComfyUI checkout")
        yield None
        return
    from tests.host.harness import InProcessHost

    with tempfile.TemporaryDirectory() as work:
        yield InProcessHost(Path(host_root).expanduser(), Path(work))
