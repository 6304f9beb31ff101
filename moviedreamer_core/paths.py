"""Resolving user-given file names safely inside a root folder.

Scripts name files (reference photos, project names). A script is user input that may come from anywhere
(a shared workflow, the HTTP API), so every name is resolved *inside* a root folder the host chose (its
input or output folder) and refused otherwise: no absolute paths, no ``..``, no symbolic link that leads
outside the root, no Windows device name. Nothing here touches the host: callers pass the root.

**Windows device names.** On Windows a file called ``CON``, ``NUL``, ``COM1`` (any case, with any extension on most
versions: ``nul.png``, ``Com1 .jpg``) is not a file but a device, in every folder: reading ``input/CON`` waits for the
console, reading ``COM1`` for a serial port, and writing ``nul.safetensors`` throws the data away. A script or a
workflow written anywhere may be run on Windows, so such names are refused (``resolve_inside``) or changed
(``safe_folder_name``) on every system alike, as ``ntpath.isreserved`` (Python 3.13) judges them, on the side of
caution (``COM0`` and ``LPT0`` too).
"""

from __future__ import annotations

import os
import re


class UnsafePathError(ValueError):
    """A file name that would leave its root folder, or that names a Windows device."""


#: The device names of Windows (``ntpath._reserved_names`` of Python 3.13, with ``COM0`` and ``LPT0``).
WINDOWS_DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                                 | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\xb9\xb2\xb3"})


def is_windows_device_name(component: str) -> bool:
    """Whether the path component ``component`` (a file or folder name, no separators) is a device on Windows: its
    part before the first dot, without trailing spaces, in any case, is one of ``WINDOWS_DEVICE_NAMES`` (which covers
    ``CON.``, ``CON `` and ``CON .txt`` alike)."""
    return component.partition(".")[0].rstrip(" ").upper() in WINDOWS_DEVICE_NAMES


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
    device = next((part for part in normalised.split("/") if is_windows_device_name(part)), None)
    if device is not None:
        raise UnsafePathError(f'"{name}": "{device}" is a device name on Windows, not a file; rename it')
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, normalised))
    try:
        inside = os.path.commonpath([real_root, real]) == real_root
    except ValueError:  # Windows: a link or junction to another drive ("paths don't have the same drive")
        inside = False
    if not inside:
        raise UnsafePathError(f'"{name}" leads outside its folder (through a link)')
    return real


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")


def legacy_folder_name(name: str, max_length: int = 80) -> str:
    """The folder name earlier versions made of ``name``: cleaned, then cut to length, so that it could end in a space
    or a dot (``MovieProject.folder_for`` still finds projects filed under it)."""
    return _UNSAFE_CHARS.sub("_", name or "").strip(" ._")[:max_length]


def safe_folder_name(name: str, fallback: str = "untitled", max_length: int = 80) -> str:
    """Turn a free-text title into one folder name: no separators, no leading dots, bounded length, no trailing space
    or dot (Windows drops them from a folder it creates, and a path through the folder then fails), and never a
    Windows device name (``CON`` becomes ``CON_``, ``nul.v2`` ``nul_.v2``)."""
    cleaned = legacy_folder_name(name, max_length).rstrip(" .")
    if is_windows_device_name(cleaned):
        stem, dot, rest = cleaned.partition(".")
        cleaned = (stem.rstrip(" ") + "_" + dot + rest)[:max_length]
    return fallback if not cleaned or is_windows_device_name(cleaned) else cleaned
