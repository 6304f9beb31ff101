"""One process at a time makes a movie project: ``ProjectLock``, an ``flock`` on ``<project>/.lock``.

Two ComfyUI servers sharing one output folder (a second server started on another port, or a queue command aimed at
the wrong one) that run the same project at once each did all the work: both rendered every keyframe, and the last
to fold its journal into ``manifest.json`` won (the folder stayed consistent, since every file is written atomically
and checked by its signature, but the work was done twice and each run moved aside what the other had just written
when their scripts differed). With the lock the second run waits until the first has finished its node, then reads
the manifest the first left and reuses its keyframes and shots.

The lock is the kernel's: it is released when its process ends, however it ends, so a killed server leaves no lock
behind (the file stays; holding it is what counts). It is counted per process: the nodes of one server run one at a
time, and a second opening of a project this process already holds (a node opening it twice, a test) goes on rather
than waiting for itself. The participants of a distributed run (``MovieProject(writer=...)``) do not take it: they
write only their own journals, and the master's gathering step, which takes it, folds them in.

Without ``flock`` (Windows), on a filesystem that refuses the lock, or in a folder where the lock file can be neither
made nor opened (a finished project on a read-only disk, which can still be queued), there is no lock and runs behave
as before. The first run of a project after this release adds the (empty) ``.lock`` file to its folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Optional

from .files import open_regular

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

#: The lock file in the project folder.
LOCK_FILE = ".lock"
#: Seconds between two tries while another process holds the lock (``wait`` is called as often).
POLL_SECONDS = 0.5

_held: dict[str, list] = {}  # the project folder's real path -> [file descriptor, openings of this process]
_guard = threading.RLock()  # re-entrant: a project collected while this thread holds it releases in place


def _open(path: str) -> Optional[int]:
    """The lock file (``files.open_regular``: a regular file, not a link or a pipe), opened for writing where it can be
    (NFS and SMB emulate ``flock`` with byte-range locks, which refuse an exclusive lock on a descriptor opened
    read-only: EBADF), else read-only (a read-only folder); opening writes nothing, so a finished project queued again
    keeps every file's time."""
    for mode in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return open_regular(path, mode, 0o644)
        except OSError:
            continue
    return None  # a read-only folder without one


class ProjectLock:
    """Hold ``<root>/.lock`` exclusively, waiting while another process holds it.

    ``wait(message)`` is called every ``POLL_SECONDS`` while waiting (the nodes pass one that raises when the user
    presses Cancel). Nothing is written into the lock file (a finished project queued again writes nothing, so it
    can sit on read-only storage), so the message cannot name the other process. ``waited`` is how many seconds the
    opening waited. ``release()`` (idempotent) lets go of this opening; the lock itself goes when the process's last
    opening is released."""

    def __init__(self, root: str, wait: Optional[Callable[[str], None]] = None):
        self.key = os.path.realpath(root)
        self.waited = 0.0
        self._released = True
        if fcntl is None:
            return
        start = None
        fd = None
        try:
            while True:
                with _guard:
                    if self.key in _held:  # this process holds it already
                        _held[self.key][1] += 1
                        break
                    if fd is None:
                        fd = _open(os.path.join(root, LOCK_FILE))
                        if fd is None:
                            log.debug("MovieDreamer: no lock file in %s (read-only folder?); going on without", root)
                            return
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        pass
                    except OSError as e:  # a filesystem without such locks (ENOLCK, EOPNOTSUPP, EBADF): no lock
                        log.warning("MovieDreamer: the movie project %s cannot be locked here (%s); two processes "
                                    "running it at once would both do the work", root, e)
                        return
                    else:
                        _held[self.key] = [fd, 1]
                        fd = None  # kept in _held
                        break
                message = (f"the movie project {root} is in use by another process (a second ComfyUI server, or a "
                           "command, on the same output folder); waiting for it to finish")
                if start is None:
                    start = time.monotonic()
                    log.warning("MovieDreamer: %s (Cancel stops waiting)", message)
                if wait is not None:
                    wait(message)
                time.sleep(POLL_SECONDS)
        finally:
            if fd is not None:
                os.close(fd)
        self._released = False
        if start is not None:
            self.waited = time.monotonic() - start
            log.warning("MovieDreamer: the movie project %s is free again after %.0f s; going on", root, self.waited)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _guard:
            entry = _held.get(self.key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del _held[self.key]
                os.close(entry[0])  # closing lets go of the flock
