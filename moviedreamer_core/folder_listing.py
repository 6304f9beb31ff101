"""A folder's files of some kinds, listed once and then kept current cheaply.

ScriptEncode offers the script files of the host's input folder as choices, and the host asks for the node's
choices on every queued prompt. Walking an input folder of 100,000 uploads took 183 ms each time. A directory's
modification time changes whenever an entry is added to it, removed or renamed, so after the first walk a refresh
only ``stat``s each directory and reads again only those that changed (their new subfolders included).

A directory modified within ``RECENT_SECONDS`` of being read is read again next time: a file added in the same
tick of the filesystem's clock would leave its time unchanged. Like ``os.walk``: hidden folders (``.name``) are
skipped, links to folders (and Windows junctions) are listed but not followed.
"""

from __future__ import annotations

import os
import time
from typing import Optional

RECENT_SECONDS = 2.0


def _is_junction(entry: os.DirEntry) -> bool:
    """A Windows directory junction (not a symbolic link to ``is_symlink``, and one pointing at an ancestor would be
    walked without end). Python 3.12 tells; before it, no junction is recognised."""
    is_junction = getattr(entry, "is_junction", None)
    return bool(is_junction()) if is_junction is not None else False


class FolderListing:
    """``files()``: paths (``/``-separated, relative to ``root``) of the files whose names end with one of
    ``extensions`` (any case), anywhere under ``root``, sorted. ``reads`` counts the directories read so far."""

    def __init__(self, root: str, extensions: tuple[str, ...]):
        self.root = root
        self.extensions = tuple(e.lower() for e in extensions)
        self.reads = 0
        #: relative folder -> (its modification time when read, or None to read it again; its files; its subfolders)
        self._folders: dict[str, tuple[Optional[int], list[str], list[str]]] = {}

    def files(self) -> list[str]:
        found: list[str] = []
        seen: set[str] = set()
        self._visit("", found, seen, time.time())
        for gone in set(self._folders) - seen:
            del self._folders[gone]
        return sorted(found)

    def _offered(self, entry: os.DirEntry) -> bool:
        """A regular file (a pipe or a device would be refused once chosen, or block whoever reads it), and for a
        link, one whose file stays inside ``root`` (the pack refuses a link that leads outside when it is chosen:
        listing it would only offer a refusal)."""
        try:
            if not entry.is_file():
                return False
            if not entry.is_symlink():
                return True
            root = os.path.realpath(self.root)
            return os.path.commonpath([root, os.path.realpath(entry.path)]) == root
        except (OSError, ValueError):  # ValueError: Windows, a link to another drive
            return False

    def _visit(self, top: str, found: list, seen: set, now: float) -> None:
        """Every folder from ``top`` down, with a stack of its own: a tree a thousand folders deep (a recursive copy
        gone wrong) reached Python's recursion limit, and ScriptEncode vanished from the node list."""
        pending = [top]
        while pending:
            pending.extend(reversed(self._visit_one(pending.pop(), found, seen, now)))

    def _visit_one(self, rel: str, found: list, seen: set, now: float) -> list[str]:
        """List folder ``rel``'s files into ``found``; returns its subfolders (relative names) to visit."""
        path = os.path.join(self.root, rel) if rel else self.root
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return []
        seen.add(rel)
        known = self._folders.get(rel)
        if known is None or known[0] is None or known[0] != mtime:
            files, folders = [], []
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        try:
                            is_dir = entry.is_dir()
                        except OSError:
                            continue
                        if is_dir:
                            if not entry.name.startswith(".") and not entry.is_symlink() and not _is_junction(entry):
                                folders.append(entry.name)
                        elif entry.name.lower().endswith(self.extensions) and self._offered(entry):
                            files.append(f"{rel}/{entry.name}" if rel else entry.name)
            except OSError:
                return []
            self.reads += 1
            recent = now - mtime / 1e9 < RECENT_SECONDS
            known = (None if recent else mtime, files, folders)
            self._folders[rel] = known
        found.extend(known[1])
        return [f"{rel}/{name}" if rel else name for name in known[2]]
