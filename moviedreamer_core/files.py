"""Writing files the way users expect: whole or not at all, in folders made on demand, with ordinary permissions.

Every file the pack writes (planner and renderer files, datasets, keyframes, shots, manifests, caches) goes
through here, so three rules hold everywhere:

* **Atomic.** The data goes to a temporary file beside the target, then ``os.replace`` puts it in place: a crash
  or a kill leaves the old file or the new one, never half of one. The temporary file is removed on failure.
* **Folders on demand.** A target in a folder that does not exist yet gets its folder.
* **Ordinary permissions.** ``tempfile.mkstemp`` (and safetensors' own ``save_file``) create files readable by
  their owner only (0600); a planner written for a team or a keyframe served by a web server must not be. A
  finished file gets the mode a plain ``open(path, "w")`` would give it: 0666 less the process's umask.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

#: Prefix of every temporary file: a run killed mid-write leaves at most files named like this.
TEMP_PREFIX = ".tmp_"

_umask_lock = threading.Lock()


def _current_umask() -> int:
    """The process's umask. Linux tells it in /proc without changing it; elsewhere it is read by setting and
    restoring it (under a lock, since the umask is process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The permissions a newly created file gets from ``open(path, "w")``: 0666 less the umask (0644 usually)."""
    return 0o666 & ~_current_umask()


@contextmanager
def atomic_path(path: str, *, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write to; when the block ends normally, the file gets ordinary
    permissions, is flushed to disk (``fsync``) and replaces ``path``. Its folder is created when missing."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def save_safetensors(tensors: dict, path: str, metadata: Optional[dict] = None) -> None:
    """``safetensors.torch.save_file``, atomic, in a folder made on demand, with ordinary permissions."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
