"""A script checked for an editor: the same validation ScriptEncode runs, as plain data.

The front-end's script helper posts the text as the user types and shows the answer under the script box
(``nodes/routes.py`` serves it). It must never raise: every outcome is a dict that JSON can carry, and of a
bounded size: at most ``MAX_REPORTED_PROBLEMS`` problems are listed, then one line counts the rest.
"""

from __future__ import annotations

from typing import Any, Optional

from .limits import MAX_CHARACTERS, MAX_REPORTED_PROBLEMS, MAX_SCRIPT_CHARS
from .problems import ScriptError, ScriptIssue, more_problems, shown
from .validate import parse_script_text, validate_script

__all__ = ["MAX_SCRIPT_CHARS", "check_script", "issues_as_data"]


def _names(raw: Any) -> list[str]:
    """Character names from parsed data that did not validate (best effort, for the helper's list)."""
    chars = raw.get("characters") if isinstance(raw, dict) else None
    chars = chars if isinstance(chars, list) else []
    return [shown(c["name"], 64) for c in chars[:MAX_CHARACTERS] if isinstance(c, dict) and isinstance(c.get("name"), str)]


def issues_as_data(error: ScriptError) -> list[dict[str, str]]:
    """The problems as ``[{"path", "message"}]``: the first ``MAX_REPORTED_PROBLEMS``, then a line that counts
    the rest (path ``script``)."""
    shown_issues = [{"path": i.path, "message": i.message} for i in error.issues[:MAX_REPORTED_PROBLEMS]]
    if error.count > MAX_REPORTED_PROBLEMS:
        shown_issues.append({"path": "script", "message": f"... and {more_problems(error.count)}"})
    return shown_issues


def check_script(text: str, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> dict[str, Any]:
    """``{"ok", "issues": [{"path", "message"}], "problems", "characters", "title", "shots", "keyframes", "seconds"}``.

    ``problems`` is the number of problems (``issues`` lists at most ``MAX_REPORTED_PROBLEMS`` of them).
    ``image_count=None`` leaves index references unchecked (the IMAGE batch is not known while editing)."""
    raw = None
    try:
        raw = parse_script_text(text)
        script = validate_script(raw, input_dir=input_dir, image_count=image_count)
    except ScriptError as e:
        return {"ok": False, "issues": issues_as_data(e), "problems": e.count, "characters": _names(raw)}
    except Exception as e:  # noqa: BLE001 - the editor's answer is data, whatever happened
        error = ScriptError([ScriptIssue("script", f"could not be checked ({type(e).__name__}: {shown(str(e))})")])
        return {"ok": False, "issues": issues_as_data(error), "problems": 1, "characters": []}
    return {"ok": True, "issues": [], "characters": [c.name for c in script.characters], "title": script.title,
            "shots": len(script.shots), "keyframes": script.n_keyframes,
            "seconds": round(sum(s.duration for s in script.shots), 3)}
