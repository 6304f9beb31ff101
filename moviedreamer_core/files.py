"""Writing files the way users expect: whole or not at all, in folders made on demand, with ordinary permissions.

Every file the pack writes (planner and renderer files, datasets, keyframes, shots, manifests, caches) goes
through here, so three rules hold everywhere:

* **Atomic.** The data goes to a temporary file beside the target, then ``os.replace`` puts it in place: a crash
  or a kill leaves the old file or the new one, never half of one. The temporary file is removed on failure.
* **Folders on demand.** A target in a folder that does not exist yet gets its folder.
* **Ordinary permissions.** ``tempfile.mkstemp`` (and safetensors' own ``save_file``) create files readable by
  their owner only (0600); a planner written for a team or a keyframe served by a web server must not be. A
  finished file gets the mode a plain ``open(path, "w")`` would give it: 0666 less the process's umask.

**Temporary files left by a kill.** A process killed while writing (kill -9, a crash, a power cut) leaves its
temporary file (``.tmp_xxxxxxxx.mp4``) behind. ``remove_stale_temp_files`` removes such files, and only those that
are clearly stale: while a file is written, its writer holds an exclusive lock on it (``flock``, released by the
system when the process ends, however it ends), so a temporary file whose lock can be taken has no writer left,
in this process or any other on the machine (several processes may write into one project folder). Only names
that ``atomic_path`` makes are considered. Where there is no ``flock`` (Windows), a temporary file counts as stale
when it has not been written for ``STALE_TEMP_SECONDS``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from .paths import UnsafePathError, resolve_inside

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: Prefix of every temporary file: a run killed mid-write leaves at most files named like this.
TEMP_PREFIX = ".tmp_"
#: The names ``atomic_path`` gives temporary files (``tempfile.mkstemp``: 8 characters, then the target's suffix).
TEMP_NAME = re.compile(r"^\.tmp_[a-z0-9_]{8}(\.[A-Za-z0-9]{1,16})?$")
#: Open a descriptor in binary mode: Windows opens one in text mode unless told (newlines rewritten, Ctrl-Z read as
#: the end of the file); elsewhere there is no such mode.
BINARY = getattr(os, "O_BINARY", 0)
#: Without ``flock``: a temporary file not written for this many seconds is stale.
STALE_TEMP_SECONDS = 3600

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
    tmp = None
    fd = None
    try:
        with write_errors_named(path):
            os.makedirs(folder, exist_ok=True)
            fd, tmp = _locked_temp_file(folder, os.path.splitext(path)[1])
            yield tmp
            os.chmod(tmp, default_file_mode())
            if fsync:
                _fsync_file(tmp)
            replace_patiently(tmp, path)
    finally:
        try:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock


#: What a write that fails for the disk or the folder's permissions says, after the file it was writing.
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextmanager
def write_errors_named(path: str) -> Iterator[None]:
    """Writing ``path`` in the block: a full disk or a folder that cannot be written is raised as ``write_error``
    says it (naming ``path`` and what to do); every other error as it is."""
    try:
        yield
    except OSError as e:
        said = write_error(e, path)
        if said is None:
            raise
        raise said from e


def write_error(e: OSError, path: str) -> Optional[OSError]:
    """An ``OSError`` of the same kind that names ``path`` (not the temporary file beside it, which is what the system
    reports) and what to do, for a full disk or a folder that cannot be written; ``None`` for any other error, or one
    about another file (the block may read files of its own)."""
    folder = os.path.dirname(os.path.abspath(path))
    named = e.filename if isinstance(getattr(e, "filename", None), str) else None
    if named is not None:
        named = os.path.abspath(named)
        if not (os.path.dirname(named) == folder or folder == named or folder.startswith(named.rstrip(os.sep) + os.sep)):
            return None  # not the file being written, nor its folder or one above it
    reason = e.strerror or str(e)
    if e.errno in _DISK_FULL:
        text = (f"{path} cannot be written: the disk is full ({reason}). Free some space and queue again; what is "
                "finished is kept")
    elif e.errno in _NOT_WRITABLE:
        text = (f"{path} cannot be written: its folder {folder} is not writable by this process ({reason}). Make it "
                "writable (or choose another output folder) and queue again")
    else:
        return None
    return OSError(e.errno, text)


#: Windows refuses to replace a file another program holds open (a video player, Explorer's preview pane, an antivirus
#: scanning the new file): there a refused replace is tried again for up to ``REPLACE_PATIENCE`` seconds.
RETRY_REPLACE = os.name == "nt"
REPLACE_PATIENCE = 5.0


def replace_patiently(src: str, path: str) -> None:
    """``os.replace(src, path)``; where ``RETRY_REPLACE``, a ``PermissionError`` is retried with growing pauses, and
    the last one names the files and what usually holds them."""
    delay, waited = 0.05, 0.0
    while True:
        try:
            os.replace(src, path)
            return
        except PermissionError as e:
            if not RETRY_REPLACE:
                raise
            if waited >= REPLACE_PATIENCE:
                raise PermissionError(e.errno, f"{path} cannot be replaced by {os.path.basename(src)}: another program "
                                      "holds one of them open (a video player, Explorer's preview pane, an antivirus); "
                                      "close it and queue again") from e
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


def _fsync_file(path: str) -> None:
    """Flush ``path`` to disk through a descriptor open for writing: Windows' ``fsync`` (``_commit``) refuses a
    read-only one (``Bad file descriptor``), where POSIX takes either."""
    fd = os.open(path, os.O_RDWR | BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked_temp_file(folder: str, suffix: str) -> tuple[Optional[int], str]:
    """A new temporary file in ``folder`` and an open descriptor holding its exclusive lock (while it is held, no
    ``remove_stale_temp_files`` takes the file for stale). Without ``flock`` (Windows) there is no lock to hold and
    the descriptor is closed at once (``None``): Windows refuses to rename or remove a file that has a handle open
    (``os.replace`` would fail with a sharing violation), and ``mkstemp``'s handle does not share deletion."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=suffix)
        if fcntl is None:
            os.close(fd)
            return None, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)  # removed as stale between its creation and our lock: take another


def remove_stale_temp_files(*folders: str) -> list[str]:
    """Remove the temporary files (``TEMP_NAME``) directly in each of ``folders`` that nobody is writing (see the
    module's docstring); returns their paths. Other files, and temporary files being written, are left alone."""
    removed = []
    for folder in folders:
        removed += _remove_stale_in(folder)
    return removed


def removed_temp_files_text(removed: Sequence, left_by: str) -> str:
    """``removed N temporary file(s) <left_by>`` for a summary or a log line about ``remove_stale_temp_files``'
    answer ``removed`` (``left_by``: "a killed build left in OUT"); empty when nothing was removed."""
    n = len(removed)
    return f"removed {n} temporary file{'s' if n != 1 else ''} {left_by}" if n else ""


def _remove_stale_in(folder: str) -> list[str]:
    """``remove_stale_temp_files`` for one folder."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    removed = []
    for name in names:
        if not TEMP_NAME.match(name):
            continue
        path = os.path.join(folder, name)
        if fcntl is None:
            try:
                if os.path.isfile(path) and time.time() - os.stat(path).st_mtime > STALE_TEMP_SECONDS:
                    os.remove(path)
                    removed.append(path)
            except OSError:
                pass
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its writer holds the lock: being written
            mine, now = os.fstat(fd), os.stat(path)
            if (mine.st_ino, mine.st_dev) == (now.st_ino, now.st_dev) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


#: Open without following a link at the last step, and without waiting for a writer (a named pipe); ``0`` where the
#: system has no such flag (Windows).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: str, flags: int = os.O_RDONLY, mode: int = 0o666, *, inside: Optional[str] = None) -> int:
    """A descriptor on ``path`` opened with ``flags``, only if it is a regular file; ``OSError`` otherwise (``ELOOP``
    for a link, ``EINVAL`` for a pipe, a device or a folder). A link is followed only when ``inside`` is given and it
    leads to a place inside that folder (a project's own link, as ``MovieProject`` allows).

    For the files a project keeps (its manifest and journals): a link planted there would have a journal emptied or
    appended to wherever it points, ``/dev/zero`` read until memory runs out, and a named pipe block the reader for
    ever. (``O_NONBLOCK`` changes nothing for a regular file's reads and writes.)"""
    if inside is not None and os.path.islink(path):
        try:
            path = resolve_inside(inside, os.path.relpath(path, inside))
        except UnsafePathError:
            raise OSError(errno.ELOOP, "a link that leads outside its folder", path) from None
    fd = os.open(path, flags | BINARY | NOFOLLOW | NONBLOCK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, *, inside: Optional[str] = None, limit: Optional[int] = None) -> bytes:
    """The bytes of ``path`` (``open_regular``'s rules: a regular file, a link only inside ``inside``). With ``limit``,
    a file of more bytes is an ``OSError`` (``EFBIG``): refused by its size before any read, and never read past
    ``limit`` + 1 bytes (it may grow meanwhile)."""
    with os.fdopen(open_regular(path, inside=inside), "rb") as f:
        if limit is None:
            return f.read()
        if os.fstat(f.fileno()).st_size <= limit:
            data = f.read(limit + 1)
            if len(data) <= limit:
                return data
        raise OSError(errno.EFBIG, f"larger than the limit of {limit:,} bytes", path)


def output_file_problem(path: str, suffix: str = ".safetensors") -> Optional[str]:
    """Why a file cannot be written at ``path`` (``None`` when it can): checked before a training run, which found out
    only after its last step that its output was a folder or lay under a file (an audit), or wrote a planner under a
    name the loaders never list."""
    if os.path.isdir(path):
        return f"{path} is a folder: name the file to write"
    if not path.lower().endswith(suffix):
        return f"{path}: the file name must end in {suffix} (the loaders list {suffix} files only)"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the folders still to be made; the filesystem's root always exists
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{path}: {parent} is a file, not a folder"
    return None


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes (hex), read in pieces: a shot of a real movie is tens of megabytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_if_changed(path: str, data: bytes) -> bool:
    """``atomic_write_bytes`` unless ``path`` already holds exactly ``data`` (then nothing is written: a rerun that
    draws the same picture leaves a read-only folder, and the file's time, alone). Returns whether it wrote."""
    try:
        if os.path.getsize(path) == len(data):
            with open(path, "rb") as f:
                if f.read(len(data) + 1) == data:
                    return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def atomic_write_text(path: str, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def save_safetensors(tensors: dict, path: str, metadata: Optional[dict] = None) -> None:
    """``safetensors.torch.save_file``, atomic, in a folder made on demand, with ordinary permissions."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
