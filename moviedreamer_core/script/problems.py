"""Problems found in a script, and how user values appear inside their messages.

A problem names its place the way a user reads the script (``shots[3].characters[1]``), or ``script`` for
the text as a whole. Messages quote the user's own values, and those values may be anything: a 100 KB name,
an ANSI escape that recolours a terminal, a right-to-left override that makes a log line read backwards. So
every quoted value goes through ``shown``: invisible and control characters are written as ``\\u....``
escapes and long values are cut, which keeps answers, node errors and server logs bounded and readable.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .limits import MAX_COLLECTED_PROBLEMS, MAX_LISTED_NAMES, MAX_REPORTED_PROBLEMS, MAX_SHOWN_CHARS


#: What ScriptEncode answers under each of its inputs but one when the script is refused: the host repeats a node's
#: refusal once per input, so the report is spelled out under one input and the others point there
#: (``nodes/script_encode_node.py``). Readers of the host's refusals drop a pointer when the report is beside it.
REPORT_POINTER = "see the problems listed under "


@dataclass(frozen=True)
class ScriptIssue:
    """One problem: where it is (``shots[3].characters[1]``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ScriptError(ValueError):
    """A script with problems. ``issues`` lists them (the first ``MAX_COLLECTED_PROBLEMS`` of each checking
    pass); ``more`` counts the ones past that; ``count`` is the total. ``str()`` is a readable multi-line
    report that spells out the first ``MAX_REPORTED_PROBLEMS`` and counts the rest."""

    def __init__(self, issues: Iterable[ScriptIssue], more: int = 0):
        self.issues = list(issues)
        self.more = more
        count = self.count
        head = "1 problem in the script:" if count == 1 else f"{count} problems in the script:"
        lines = [head] + [f"  {i}" for i in self.issues[:MAX_REPORTED_PROBLEMS]]
        if count > MAX_REPORTED_PROBLEMS:
            lines.append(f"  ... and {more_problems(count)}")
        super().__init__("\n".join(lines))

    @property
    def count(self) -> int:
        return len(self.issues) + self.more


class Problems:
    """Problems as a checking pass finds them: the first ``MAX_COLLECTED_PROBLEMS`` in full, the rest counted."""

    def __init__(self):
        self.issues: list[ScriptIssue] = []
        self.more = 0

    def add(self, path, message) -> None:
        """``path`` and ``message`` may be functions of no arguments, called only for a problem that is kept."""
        if len(self.issues) < MAX_COLLECTED_PROBLEMS:
            self.issues.append(ScriptIssue(path() if callable(path) else path, message() if callable(message) else message))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.issues)

    def error(self) -> ScriptError:
        return ScriptError(self.issues, self.more)


def more_problems(count: int) -> str:
    """``"950 more problems (fix the ones above first)"`` for a report of ``count`` problems."""
    rest = count - MAX_REPORTED_PROBLEMS
    return f"{rest} more problem{'s' if rest != 1 else ''} (fix the ones above first)"


def format_path(loc: Iterable[Any]) -> str:
    """``("shots", 3, "characters", 1)`` -> ``shots[3].characters[1]``; odd keys are quoted through ``shown``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            if isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
                out += f".{part}" if out else part
            else:  # a key no field has: quoted, escaped and cut, so the path itself stays readable
                out += f'["{shown(part)}"]' if isinstance(part, str) else f"[{shown(part)}]"
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# ------------------------------------------------------------------------------------ invisible characters

#: Letters that render as nothing although Unicode files them as letters or symbols (Hangul fillers, the
#: braille blank). Control, format, separator, private-use and unassigned characters are found by category.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_VISIBLE_ASCII = re.compile(r"[ -~]*")
#: Unicode gives control characters no names; these are the ones people meet.
_CONTROL_NAMES = {"\x00": "NULL", "\x07": "BELL", "\x08": "BACKSPACE", "\t": "TAB", "\n": "LINE FEED",
                  "\r": "CARRIAGE RETURN", "\x1b": "ESCAPE", "\x7f": "DELETE"}


def _is_hidden(ch: str) -> bool:
    return ch in _BLANK_LETTERS or unicodedata.category(ch) in _HIDDEN_CATEGORIES


def hidden_character(text: str) -> Optional[tuple[int, str]]:
    """The first control or invisible character of ``text`` (zero-width space, BEL, NUL, ESC, a direction
    override such as U+202E) as ``(position, "U+202E RIGHT-TO-LEFT OVERRIDE")``, or ``None``.

    Such characters make a name display as other text in the UI, in logs and in file names, or make two
    different names look the same."""
    if _VISIBLE_ASCII.fullmatch(text):
        return None
    for i, ch in enumerate(text):
        if ch == " " or ("!" <= ch <= "~"):
            continue
        if _is_hidden(ch):
            return i, f"U+{ord(ch):04X} {unicodedata.name(ch, None) or _CONTROL_NAMES.get(ch, 'control character')}"
    return None


def name_key(name: str) -> str:
    """How names are compared: Unicode NFKC (full-width, ligature and other compatibility forms become
    their plain letters) and case-folded, so ``Ava``, ``ava`` and ``Ａｖａ`` are one name."""
    return unicodedata.normalize("NFKC", name.strip()).casefold()


# ------------------------------------------------------------------------------------------ quoted values


def _escape_hidden(text: str) -> str:
    if _VISIBLE_ASCII.fullmatch(text):
        return text
    return "".join(f"\\u{ord(c):04x}" if c != " " and not ("!" <= c <= "~") and _is_hidden(c) else c for c in text)


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """A user's value as it may appear inside a message: hidden characters escaped, at most ``limit``
    characters (a cut value ends with "…"). Never fails and never does work proportional to a huge value."""
    if isinstance(value, str):
        text = value[: limit * 2]
    elif isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, int):
        digits = value.bit_length() * 30103 // 100000 + 1
        text = str(value) if digits <= limit else f"a {digits}-digit number"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = f"a list of {len(value)}"
    elif isinstance(value, dict):
        text = f"a mapping of {len(value)}"
    else:
        text = type(value).__name__
    text = _escape_hidden(text)
    full = len(value) if isinstance(value, str) else len(text)
    if full > limit or len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def listed(names: list[str], limit: int = MAX_LISTED_NAMES) -> str:
    """``Ava, Bo, Cy`` or ``Ava, Bo, ... (300 in all)``: a list of names that stays short."""
    head = ", ".join(shown(n, 40) for n in names[:limit])
    return head if len(names) <= limit else f"{head}, ... ({len(names)} in all)"
