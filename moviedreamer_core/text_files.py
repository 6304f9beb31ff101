"""Reading the small text files users write: scripts, captions, character descriptions, workflows, configs.

Every such file is read the same way, so three rules hold everywhere:

* **Bounded.** At most ``limit`` + 1 bytes are ever read, whatever the file claims: a file that grows while it is
  read, a named pipe, or a device such as ``/dev/zero`` given by mistake is refused for its size instead of filling
  memory (``os.stat`` alone cannot promise that: a device reports size 0).
* **UTF-8, a byte-order mark allowed.** Windows Notepad and Excel save UTF-8 with a leading byte-order mark; it is
  dropped instead of reaching a caption's text or making ``json.loads`` fail with "Unexpected UTF-8 BOM".
* **One kind of error.** ``TextFileError`` (a ``ValueError``) says what is wrong in words that follow the file's
  name as the caller shows it (``f"{name} {error}"``: "is not UTF-8 text (...)", "cannot be read (...)"); ``kind`` tells
  the caller which case it met (``"size"``, ``"encoding"``, ``"unreadable"``), and ``said_with`` adds the caller's
  advice for that case.

``loads_json`` parses JSON that arrives from outside (a file's text, a safetensors file's metadata, a prompt input, a
worker's payload header, a server's message) so that text nested thousands deep is a ``ValueError`` like any other
malformed JSON: Python's parser recurses once a level and raises ``RecursionError``, which a reader catching
``ValueError`` let through as a traceback. ``loads_json_named`` and ``read_json_file`` do the same and say which file
(and which part of it) was not JSON: json's own message ("Expecting value: line 1 column 1 (char 0)") names none, so
a user with several files did not know which one to fix.

This module imports nothing of the pack, so the command-line programs can load it before the pack is importable
(``cli/host_library.core_module``).
"""

from __future__ import annotations

import json
import os
from stat import S_ISFIFO, S_ISREG
from typing import Optional

#: Seconds a named pipe that no program writes to is waited for (``_writer_came``) before it is refused.
PIPE_WRITER_WAIT_S = 5
#: The byte-order mark some editors put before UTF-8 text.
UTF8_BOM = b"\xef\xbb\xbf"
#: The byte-order marks of UTF-16 (little- and big-endian): text saved in the wrong encoding, named as such.
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class TextFileError(ValueError):
    """A file that could not be read as UTF-8 text of at most ``limit`` bytes.

    ``kind`` is ``"size"`` (larger than ``limit``: ``size`` is its size when the file system knew it before the read,
    else ``None``), ``"encoding"`` (not UTF-8: ``byte`` at ``offset``; ``found`` "UTF-16" for UTF-16 text) or ``"unreadable"`` (an ``OSError``: ``reason``
    names it)."""

    def __init__(self, kind: str, reason: str, *, limit: int, size: Optional[int] = None,
                 byte: Optional[int] = None, offset: Optional[int] = None, found: Optional[str] = None):
        super().__init__(reason)
        self.kind, self.reason, self.limit = kind, reason, limit
        self.size, self.byte, self.offset = size, byte, offset
        self.found = found  # the encoding the text is in, where it says so itself ("UTF-16": its byte-order mark)

    def said_with(self, advice: dict) -> str:
        """``reason`` and then the caller's advice for this ``kind`` (``{"encoding": "; save it as UTF-8"}``), except
        where the reason already says what to do (UTF-16 text)."""
        return self.reason + ("" if self.found else advice.get(self.kind, ""))


def _writer_came(fd: int) -> bool:
    """A named pipe read at once (no writer had it open) is given ``PIPE_WRITER_WAIT_S`` for one to come: a writer
    started beside the reader (``cat s.yaml > pipe &``) may open it a moment later."""
    import select

    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(PIPE_WRITER_WAIT_S * 1000))


def read_text_file(path: str, limit: int, *, errors: str = "strict") -> str:
    """The text of ``path``: UTF-8 with an optional byte-order mark dropped, at most ``limit`` bytes.

    ``errors="replace"`` reads text of unknown encoding (subtitles saved in Latin-1) with U+FFFD for bytes that are
    not UTF-8 instead of refusing it. Raises ``TextFileError``; the file is never read past ``limit`` + 1 bytes."""
    known = None
    try:
        info = os.stat(path)
        if S_ISREG(info.st_mode) and info.st_size > limit:  # refused before any read: a regular file's size is known
            known = info.st_size
        else:
            # Opened without waiting: a named pipe nobody writes to blocked the open for ever (`script validate`,
            # `queue --script`: an audit); then read waiting as usual, so a pipe whose writer is there
            # (`--script <(...)`, /dev/stdin) is read whole. A regular file's reads ignore the flag.
            nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no named pipes of this kind
            fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
            try:
                if nonblocking:  # (Windows's set_blocking, Python 3.12+, refuses an ordinary file)
                    os.set_blocking(fd, True)
            except OSError:
                os.close(fd)
                raise
            with os.fdopen(fd, "rb") as f:
                data = f.read(limit + 1)
                if not data and S_ISFIFO(info.st_mode) and not _writer_came(f.fileno()):
                    raise TextFileError("unreadable", f"is a named pipe that nothing wrote to within {PIPE_WRITER_WAIT_S} s",
                                        limit=limit)
                data = data or f.read(limit + 1)
    except OSError as e:
        raise TextFileError("unreadable", f"cannot be read ({type(e).__name__}: {e.strerror or e})",
                            limit=limit) from None
    if known is not None:
        raise TextFileError("size", f"is {known:,} bytes, more than the limit of {limit:,} bytes", limit=limit, size=known)
    if len(data) > limit:  # it grew since stat(), or it is a pipe or a device
        raise TextFileError("size", f"is larger than the limit of {limit:,} bytes", limit=limit)
    if data.startswith(UTF16_BOMS) and errors == "strict":
        raise TextFileError("encoding", "is UTF-16 text, not UTF-8 (Windows PowerShell 5 writes UTF-16 with `>`; save "
                            "it as UTF-8)", limit=limit, byte=data[0], offset=0, found="UTF-16")
    skip = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        return data[skip:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        offset = skip + e.start  # in the file, as a hex editor shows it
        raise TextFileError("encoding", f"is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset:,})",
                            limit=limit, byte=data[offset], offset=offset) from None


class NestedTooDeeply(ValueError):
    """JSON nested too deeply for Python's parser (``loads_json``): a ``ValueError``, so a reader's ``except
    ValueError`` covers it; a reader that says it in words of its own ("nested too deeply to be a workflow") catches
    this class first instead of matching the message."""


def loads_json(text: str | bytes):
    """``json.loads(text)``; JSON nested too deeply for Python's parser ("[[[[..." a few thousand levels) is a
    ``ValueError`` (``NestedTooDeeply``, "nested too deeply"), so a reader's own handling of malformed JSON
    (``except ValueError``) covers it too and says it in that reader's words."""
    try:
        return json.loads(text)
    except RecursionError:  # json's parser recurses once a level; RecursionError is not a ValueError
        raise NestedTooDeeply("nested too deeply") from None


def loads_json_named(text: str | bytes, shown: str):
    """``loads_json(text)``; malformed JSON is a ``ValueError`` that begins with ``shown``, the file and the part of it
    the text came from as the user knows them (``"board.safetensors: its 'moviedreamer_storyboard' metadata"``):
    "``shown`` is not valid JSON (line 1, column 2: Expecting value)", "... (nested too deeply)"."""
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{shown} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except ValueError as e:  # nested too deeply; bytes that are not UTF-8
        raise ValueError(f"{shown} is not valid JSON ({e})") from None


def loads_json_object(text: str | bytes, shown: str, of: str = "") -> dict:
    """``loads_json_named(text, shown)`` that must be a JSON object (a configuration read as keyword arguments): a
    ``ValueError`` "``shown`` is not a JSON object (got list)" otherwise (``of``: what its keys are, "... of
    PlannerConfig fields (got list)"), where a ``TypeError`` or ``AttributeError`` naming no file came later."""
    return _json_object(loads_json_named(text, shown), shown, of)


def _json_object(value, shown: str, of: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{shown} is not a JSON object{' of ' + of if of else ''} (got {type(value).__name__})")
    return value


def read_json_file(path: str, limit: int, shown: Optional[str] = None):
    """The JSON value in the file ``path``, read bounded (``read_text_file``: at most ``limit`` + 1 bytes, so a huge file
    or a device never fills memory); any problem is a ``ValueError`` that begins with ``shown`` (default ``path``):
    unreadable, too large, not UTF-8, not valid JSON (where), nested too deeply."""
    shown = path if shown is None else shown
    try:
        text = read_text_file(path, limit)
    except TextFileError as e:
        raise ValueError(f"{shown} {e}") from None
    return loads_json_named(text, shown)


def read_json_object(path: str, limit: int, shown: Optional[str] = None, of: str = "") -> dict:
    """``read_json_file`` that must be a JSON object (an index, a manifest, a configuration, a trainer's state): a
    ``ValueError`` "``shown`` is not a JSON object[ of ``of``] (got list)" otherwise."""
    shown = path if shown is None else shown
    return _json_object(read_json_file(path, limit, shown), shown, of)
