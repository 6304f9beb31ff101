"""A script checked for an editor: the same validation ScriptEncode runs, as plain data.

The front-end's script helper posts the text as the user types and shows the answer under the script box
(``nodes/routes.py`` serves it). It must never raise: every outcome is a dict that JSON can carry, and of a
bounded size: at most ``MAX_REPORTED_PROBLEMS`` problems are listed, then one line counts the rest.
"""

from __future__ import annotations

from typing import Any, Optional

from .limits import MAX_CHARACTERS, MAX_REPORTED_PROBLEMS, MAX_SCRIPT_CHARS
from .mentions import names_off_screen
from .problems import ScriptError, ScriptIssue, listed, more_problems, shown
from .schema import Script
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
    """``{"ok", "issues": [{"path", "message"}], "problems", "notes", "characters", "title", "shots", "keyframes",
    "seconds"}``; ``notes`` (valid scripts): actions that name characters the shot does not show (``off_screen_names``).

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
    return {"ok": True, "issues": [], "notes": off_screen_names(script), "characters": [c.name for c in script.characters],
            "title": script.title, "shots": len(script.shots), "keyframes": script.n_keyframes,
            "seconds": round(sum(s.duration for s in script.shots), 3)}


def off_screen_names(script: Script) -> list[dict[str, str]]:
    """Notes, not problems (the script is valid): each action that names a character the shot does not list in
    ``characters``, as ``[{"path", "message"}]`` (at most ``MAX_REPORTED_PROBLEMS``, then a line that counts the rest).
    The planner binds what an action says of a character to that character's face only when it is on screen
    (``mentions.keyframe_mentions``), so "Ava hands Bo a lantern." in a shot of Ava alone says nothing of Bo."""
    names = [c.name for c in script.characters]
    notes = []
    for i, shot in enumerate(script.shots):
        actions = shot.action if isinstance(shot.action, list) else [shot.action]
        for k, action in enumerate(actions):
            away = names_off_screen(action, names, shot.characters)
            if away:
                who = listed(away)
                them, are = ("them", "are") if len(away) > 1 else (who, "is")
                notes.append({"path": f"shots[{i}].action" + (f"[{k}]" if isinstance(shot.action, list) else ""),
                              "message": f"names {who}, who {are} not in this shot's characters: what it says of {them} "
                                         f"is bound to nobody on screen (add {them} to characters if seen)"})
    if len(notes) > MAX_REPORTED_PROBLEMS:
        rest = len(notes) - MAX_REPORTED_PROBLEMS
        notes = notes[:MAX_REPORTED_PROBLEMS] + [{"path": "script", "message": f"... and {rest} more such actions"}]
    return notes
