"""What a keyframe's action sentence says about each character it names: the *mention* text.

The planner reads text as sentence embeddings (MovieDreamer section 3.2), one vector per sentence. A sentence that
names two characters ("Ava, in a purple hat, and Bo walk in.") pools what it says of both into one vector, and the
planner is never given names (slots are permuted per story, names differ per film), so it cannot tell *whose* hat
the sentence states: the binding the paper's multimodal script makes by putting the face next to the name is lost.
``keyframe_mentions`` restores it at the sentence level: for each character on screen, the parts of the action
sentence that begin where its name is written and run to where the next character's name is written (or to the
end), its own name replaced by a neutral word so that names still never reach the model. The planner adds the
embedding of that text to the character's identity element of the keyframe (``PlannerConfig.inputs``
``"mentions"``), next to its face.

A rule of thumb, not a parser: pronouns ("she puts on a hat") and sentences where one character's clause is
interrupted by another's name are split where the names are written. Work is bounded: one regular-expression pass
over each action sentence (at most ``limits.MAX_TEXT_LENGTH`` characters) with the cast's names as literals.
"""

from __future__ import annotations

import functools
import re
from typing import Collection, Optional, Sequence

#: The word a character's own name is replaced with in its mention text.
NEUTRAL = "someone"


@functools.lru_cache(maxsize=8)
def _names_pattern(names: tuple[str, ...]) -> Optional[re.Pattern]:
    """Any of ``names`` as a whole word (not inside a longer word; names with punctuation work), longest first.
    Built once per cast (cached): a script's keyframes all share it, and building it is most of the work."""
    literals = sorted({n for n in names if n}, key=len, reverse=True)
    if not literals:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in literals) + r")(?!\w)")


def keyframe_mentions(action: str, names: Sequence[str], on_screen: Sequence[int]) -> list[Optional[str]]:
    """For each character index of ``on_screen`` (indices into ``names``, the script's characters), the text of
    ``action`` about it, or ``None`` when the sentence does not name it.

    A name's span runs from the name to the next written name of any character of the script (or to the end);
    a character named several times gets its spans joined by a space. Its own name becomes ``NEUTRAL``."""
    pattern = _names_pattern(tuple(names))
    if pattern is None:
        return [None] * len(on_screen)
    found = list(pattern.finditer(action))
    spans: dict[str, list[str]] = {}
    for j, m in enumerate(found):
        stop = found[j + 1].start() if j + 1 < len(found) else len(action)
        text = (NEUTRAL + action[m.end():stop]).strip()
        spans.setdefault(m.group(0), []).append(text)
    out = []
    for c in on_screen:
        parts = spans.get(names[c]) if 0 <= c < len(names) else None
        out.append(" ".join(parts) if parts else None)
    return out


def names_written(action: str, names: Sequence[str]) -> list[str]:
    """The names of ``names`` that ``action`` writes (whole words, as ``keyframe_mentions`` finds them), each once,
    in the order written. The script check uses it to point at an action that names a character the shot does not
    put on screen: what it says of that character reaches nobody's mention."""
    pattern = _names_pattern(tuple(names))
    return [] if pattern is None else list(dict.fromkeys(m.group(0) for m in pattern.finditer(action)))


def names_off_screen(action: str, names: Sequence[str], on_screen: Collection[str]) -> list[str]:
    """``names_written`` less the names ``on_screen``: the characters ``action`` names whose mention nobody gets.
    The script check's notes and Script Info's keyframe list both point at them."""
    return [n for n in names_written(action, names) if n not in on_screen]
