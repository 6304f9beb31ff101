"""A script checked for an editor: the same validation ScriptEncode runs, as plain data.

The front-end's script helper posts the text as the user types and shows the answer under the script box
(``nodes/routes.py`` serves it). It must never raise: every outcome is a dict that JSON can carry.
"""

from __future__ import annotations

from typing import Any, Optional

from .validate import ScriptError, load_script, parse_script_text

#: Editors post on every pause in typing; a script longer than this is refused rather than parsed.
MAX_SCRIPT_CHARS = 1_000_000


def _names(text: str) -> list[str]:
    """Character names from a script that may not validate (best effort, for the helper's list)."""
    try:
        raw = parse_script_text(text)
    except ScriptError:
        return []
    chars = raw.get("characters") if isinstance(raw, dict) else None
    return [str(c["name"]) for c in chars or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]


def check_script(text: str, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> dict[str, Any]:
    """``{"ok", "issues": [{"path", "message"}], "characters", "title", "shots", "keyframes", "seconds"}``.

    ``image_count=None`` leaves index references unchecked (the IMAGE batch is not known while editing)."""
    if len(text) > MAX_SCRIPT_CHARS:
        return {"ok": False, "issues": [{"path": "", "message": f"the script is longer than {MAX_SCRIPT_CHARS} characters"}],
                "characters": []}
    try:
        script = load_script(text, input_dir=input_dir, image_count=image_count)
    except ScriptError as e:
        return {"ok": False, "issues": [{"path": i.path, "message": i.message} for i in e.issues], "characters": _names(text)}
    return {"ok": True, "issues": [], "characters": [c.name for c in script.characters], "title": script.title,
            "shots": len(script.shots), "keyframes": script.n_keyframes,
            "seconds": round(sum(s.duration for s in script.shots), 3)}
