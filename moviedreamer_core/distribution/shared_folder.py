"""Does this participant write into the master's own output folder (one machine, or a network filesystem)?

When the master's prompt is queued, its on-prompt step leaves a marker named after the job in its output folder
(``moviedreamer/.jobs/<job>``). ComfyUI-Distributed dispatches the workers' prompts first and the master's a
moment later, while a worker reaches the end of its share only after rendering and animating it; so a worker
that finds the marker in its own output folder shares the master's folder and sends only the names and hashes of
its files, and one that does not find it sends the files themselves. A worker that looks too early sends the
files: slower, never wrong. Markers older than a week are removed when a new one is written.
"""

from __future__ import annotations

import os
import time

from ..files import atomic_write_bytes
from ..project import PROJECTS_DIR

MARKERS_DIR = ".jobs"
MAX_AGE_S = 7 * 24 * 3600


def _marker(output_dir: str, job: str) -> str:
    return os.path.join(output_dir, PROJECTS_DIR, MARKERS_DIR, job)


def mark_master_folder(output_dir: str, job: str) -> None:
    """Called on the master when a distributed prompt is queued (``job`` is a checked id)."""
    folder = os.path.join(output_dir, PROJECTS_DIR, MARKERS_DIR)
    os.makedirs(folder, exist_ok=True)
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names[:10000]:
        path = os.path.join(folder, name)
        try:
            if now - os.stat(path).st_mtime > MAX_AGE_S:
                os.remove(path)
        except OSError:
            pass
    atomic_write_bytes(_marker(output_dir, job), b"master\n")


def shares_master_folder(output_dir: str, job: str) -> bool:
    """True when the master of ``job`` writes into this same output folder."""
    return os.path.isfile(_marker(output_dir, job))
