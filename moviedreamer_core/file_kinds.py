"""Which MovieDreamer file a ``.safetensors`` file is, from its header's metadata alone.

Planners and renderers share one models folder (``models/moviedreamer``), so each loader listed the other's files
too, and a renderer picked as the planner failed only when the prompt ran ("is not a MovieDreamer planner file").
Each file's header says what it is (``planner.checkpoint.METADATA_KEY``, ``renderer.adapter.METADATA_KEY``); the
loaders list the files of their kind and those whose kind is unknown (another tool's file, one that cannot be read:
its loader then says what is wrong with it). Reading a header costs one small read; answers are kept per file
size and modification time, so listing the folder again reads only what changed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Optional

from safetensors import safe_open

from .planner.checkpoint import METADATA_KEY as PLANNER_KEY
from .renderer.adapter import METADATA_KEY as RENDERER_KEY

PLANNER, RENDERER = "planner", "renderer"
#: The metadata key each kind's files carry.
KIND_KEYS = {PLANNER_KEY: PLANNER, RENDERER_KEY: RENDERER}


def file_kind(path: str) -> Optional[str]:
    """``"planner"``, ``"renderer"``, or ``None`` (not a MovieDreamer planner or renderer, or unreadable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _kind(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _kind(path: str, size: int, mtime_ns: int) -> Optional[str]:
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception:  # noqa: BLE001  (a damaged or foreign file: its loader reports it)
        return None
    return next((kind for key, kind in KIND_KEYS.items() if key in metadata), None)


def listed_for(kind: str, found: Optional[str]) -> bool:
    """Whether a loader of ``kind`` lists a file of kind ``found``: its own kind, or an unknown one."""
    return found is None or found == kind


__all__ = ["PLANNER", "RENDERER", "KIND_KEYS", "file_kind", "listed_for"]
