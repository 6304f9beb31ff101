"""Resolving user-given file names safely inside a root folder.

Scripts name files (reference photos, project names). A script is user input that may come from anywhere
(a shared workflow, the HTTP API), so every name is resolved *inside* a root folder the host chose (its
input or output folder) and refused otherwise: no absolute paths, no ``..``, no symbolic link that leads
outside the root. Nothing here touches the host: callers pass the root.
"""

from __future__ import annotations

import os
import re


class UnsafePathError(ValueError):
    """A file name that would leave its root folder."""


def resolve_inside(root: str, name: str) -> str:
    """Return the real path of ``name`` inside ``root``; raise ``UnsafePathError`` if it would leave it.

    The check is made on the fully resolved path (``os.path.realpath``), so a link inside the root that
    points outside is refused as well. The file need not exist.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError("empty file name")
    if "\x00" in name:
        raise UnsafePathError("file name contains a NUL character")
    normalised = name.replace("\\", "/")
    if os.path.isabs(name) or normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise UnsafePathError(f'"{name}" is an absolute path')
    if ".." in normalised.split("/"):
        raise UnsafePathError(f'"{name}" contains ".."')
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, normalised))
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafePathError(f'"{name}" leads outside its folder (through a link)')
    return real


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_folder_name(name: str, fallback: str = "untitled", max_length: int = 80) -> str:
    """Turn a free-text title into one folder name: no separators, no leading dots, bounded length."""
    cleaned = _UNSAFE_CHARS.sub("_", name or "").strip(" ._")
    return cleaned[:max_length] or fallback
