"""Parse and validate a movie script, reporting every problem at once with its exact place.

A script is checked completely before any model work starts (DESIGN.md section 5): a user who queued an
hour of sampling must not learn about a typo in shot 40 after shot 39 rendered. Problems are collected, not
raised one by one, and each names its place in the script the way a user reads it::

    shots[3].characters[1]: unknown character "Mira" (known: Ava, Bo)

Two passes run over the same input and their findings are merged: the structural pass (pydantic, types,
required fields, ranges) and the cross-field pass (names, references, files, limits), which works on the
raw data so that it still reports what it can when the structure is partly broken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import yaml
from pydantic import ValidationError

from .references import check_reference_file
from .schema import MAX_TOTAL_KEYFRAMES, Character, Script, Shot


@dataclass(frozen=True)
class ScriptIssue:
    """One problem: where it is (``shots[3].characters[1]``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ScriptError(ValueError):
    """A script with problems. ``issues`` lists them all; ``str()`` is a readable multi-line report."""

    def __init__(self, issues: Iterable[ScriptIssue]):
        self.issues = list(issues)
        count = len(self.issues)
        head = "1 problem in the script:" if count == 1 else f"{count} problems in the script:"
        super().__init__("\n".join([head] + [f"  {i}" for i in self.issues]))


def format_path(loc: Iterable[Any]) -> str:
    """``("shots", 3, "characters", 1)`` -> ``shots[3].characters[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ---------------------------------------------------------------------------------------------- parsing


def parse_script_text(text: str) -> Any:
    """JSON or YAML text to plain data. Syntax errors become a ``ScriptError`` with line and column.

    Text starting with ``{`` is read as JSON (its error messages are more precise); anything else as YAML
    (``yaml.safe_load``: no Python objects are ever constructed from a script).
    """
    if not isinstance(text, str) or not text.strip():
        raise ScriptError([ScriptIssue("script", "the script is empty")])
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ScriptError([ScriptIssue("script", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")])
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ScriptError([ScriptIssue("script", f"invalid YAML{where}: {problem}")])


# ------------------------------------------------------------------------------------ structural pass

_MODEL_FIELDS = {
    name for model in (Script, Character, Shot) for name in model.model_fields
}
_UNION_HINTS = {
    "id": "expected a text id or a whole number",
    "action": "expected a sentence or a non-empty list of sentences",
    "references": "expected a file name or an image index (0, 1, ...)",
}
_FIELDS_OF = {"": Script, "characters": Character, "shots": Shot}


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _type_name(value: Any) -> str:
    return {bool: "true/false", str: "text", int: "a whole number", float: "a number", list: "a list",
            dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)


def _friendly(err: dict, field: str) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_type_name(err.get('input'))}"
    if kind == "enum":
        return f"{err.get('input')!r} is not one of: {ctx.get('expected', '').replace(chr(39), '')}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in ("greater_than", "greater_than_equal") and field == "duration":
        return f"must be a positive number of seconds, got {err.get('input')!r}"
    if kind == "less_than_equal" and field == "keyframes":
        return f"{err.get('input')} keyframes in one shot is too many (at most {ctx.get('le')}); split the shot"
    if kind == "less_than_equal" and field == "duration":
        return f"{err.get('input')} seconds is too long for one shot (at most {ctx.get('le')}); split the shot"
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else kind


def _structural_issues(raw: Any) -> list[ScriptIssue]:
    try:
        Script.model_validate(raw)
        return []
    except ValidationError as e:
        errors = e.errors()
    # pydantic reports one error per branch of a union ("constrained-str", "int"); cut the location at the
    # first part that is neither a field nor an index and keep one message per place.
    grouped: dict[tuple, list[dict]] = {}
    for err in errors:
        loc = []
        for part in err["loc"]:
            if isinstance(part, int) or part in _MODEL_FIELDS:
                loc.append(part)
            elif err["type"] == "extra_forbidden" and part == err["loc"][-1]:
                loc.append(part)
            else:
                break
        grouped.setdefault(tuple(loc), []).append(err)
    issues = []
    for loc, errs in grouped.items():
        field = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if len(errs) > 1:
            # A union: prefer the branch whose type matched but whose constraint failed.
            specific = [x for x in errs if not x["type"].endswith("_type") and x["type"] != "int_parsing"]
            message = _friendly(specific[0], field) if specific else _UNION_HINTS.get(field, _friendly(errs[0], field))
        else:
            message = _friendly(errs[0], field)
            if errs[0]["type"] == "extra_forbidden":
                parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), "")
                allowed = ", ".join(_FIELDS_OF.get(parent, Script).model_fields)
                message = f'unknown field "{field}" (allowed: {allowed})'
        issues.append(ScriptIssue(format_path(loc), message))
    return issues


# ------------------------------------------------------------------------------------ cross-field pass


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _cross_field_issues(raw: dict, input_dir: Optional[str], image_count: Optional[int]) -> list[ScriptIssue]:
    issues: list[ScriptIssue] = []
    add = lambda path, msg: issues.append(ScriptIssue(path, msg))  # noqa: E731

    # Characters: unique names (case-insensitive, since a script is written by hand) and usable references.
    known: dict[str, int] = {}
    for i, ch in enumerate(_as_list(raw.get("characters"))):
        if not isinstance(ch, dict):
            continue
        name = ch.get("name")
        if isinstance(name, str) and name.strip():
            key = name.strip().casefold()
            if key in known:
                add(f"characters[{i}].name", f'duplicate character "{name.strip()}" (also characters[{known[key]}])')
            else:
                known[key] = i
        for j, ref in enumerate(_as_list(ch.get("references"))):
            where = f"characters[{i}].references[{j}]"
            if isinstance(ref, bool):
                continue  # the structural pass reports the type
            if isinstance(ref, int) and ref >= 0 and image_count is not None:
                if image_count == 0:
                    add(where, f"index {ref} refers to the IMAGE batch input, but no images are connected")
                elif ref >= image_count:
                    add(where, f"index {ref} is out of range: the IMAGE batch has {image_count} image(s) (0..{image_count - 1})")
            elif isinstance(ref, str) and ref.strip() and input_dir is not None:
                _, problem = check_reference_file(input_dir, ref.strip())
                if problem:
                    add(where, problem)

    names = [c["name"].strip() for c in _as_list(raw.get("characters")) if isinstance(c, dict) and isinstance(c.get("name"), str)]
    known_text = ", ".join(names) if names else "none: the script has no characters"

    # Shots: unique ids, known characters, each at most once, keyframe counts that agree with the actions.
    seen_ids: dict[str, int] = {}
    total_keyframes = 0
    for s, shot in enumerate(_as_list(raw.get("shots"))):
        if not isinstance(shot, dict):
            continue
        sid = shot.get("id")
        if isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid).strip():
            key = str(sid).strip()
            if key in seen_ids:
                add(f"shots[{s}].id", f'duplicate shot id "{key}" (also shots[{seen_ids[key]}])')
            else:
                seen_ids[key] = s
        on_screen: set[str] = set()
        for j, name in enumerate(_as_list(shot.get("characters"))):
            if not isinstance(name, str) or not name.strip():
                continue
            key = name.strip().casefold()
            if key not in known:
                add(f"shots[{s}].characters[{j}]", f'unknown character "{name.strip()}" (known: {known_text})')
            elif key in on_screen:
                add(f"shots[{s}].characters[{j}]", f'character "{name.strip()}" is listed twice')
            elif names[known[key]] != name.strip():
                add(f"shots[{s}].characters[{j}]", f'"{name.strip()}" differs in case from the character "{names[known[key]]}"')
            on_screen.add(key)
        action, keyframes = shot.get("action"), shot.get("keyframes")
        if isinstance(action, list) and len(action) > 0 and isinstance(keyframes, int) and not isinstance(keyframes, bool):
            if keyframes != len(action):
                add(f"shots[{s}].keyframes", f"keyframes is {keyframes} but action lists {len(action)} sentences; give one sentence per keyframe, or a single sentence")
        if isinstance(keyframes, int) and not isinstance(keyframes, bool) and keyframes > 0:
            total_keyframes += keyframes
        elif isinstance(action, list):
            total_keyframes += max(len(action), 1)
        else:
            total_keyframes += 1
    if total_keyframes > MAX_TOTAL_KEYFRAMES:
        add("shots", f"the script plans {total_keyframes} keyframes, more than the limit of {MAX_TOTAL_KEYFRAMES}")
    return issues


# ------------------------------------------------------------------------------------------ entry points

def _script_order(issue: ScriptIssue) -> tuple:
    """Sort key following the script's own order: ``shots[2].id`` before ``shots[2].scene`` before ``shots[10]``."""
    key, model = [], Script
    for token in issue.path.replace("]", "").replace("[", ".").split("."):
        if token.isdigit():
            key.append((0, int(token)))
            continue
        fields = list(model.model_fields) if model else []
        key.append((1, fields.index(token) if token in fields else len(fields)))
        model = {"characters": Character, "shots": Shot}.get(token) if model is Script else None
    return tuple(key)


def validate_script(raw: Any, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> Script:
    """Validate parsed script data and return the ``Script``; raise ``ScriptError`` listing every problem.

    ``input_dir``: the folder that file references are resolved in (the host's input folder); ``None``
    skips file checks. ``image_count``: size of the IMAGE batch that index references point into (``0``
    when none is connected); ``None`` skips index checks.
    """
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ScriptError([ScriptIssue("script", f"expected a mapping with title, style, characters and shots; got {kind}")])
    issues = _structural_issues(raw) + _cross_field_issues(raw, input_dir, image_count)
    if issues:
        # Report in script order (title, style, characters, shots ...) without exact repeats.
        raise ScriptError(sorted(dict.fromkeys(issues), key=_script_order))
    return Script.model_validate(raw)


def load_script(text: str, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> Script:
    """Parse JSON or YAML script text and validate it (see ``validate_script``)."""
    return validate_script(parse_script_text(text), input_dir=input_dir, image_count=image_count)
