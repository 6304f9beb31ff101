"""Parse and validate a movie script, reporting every problem at once with its exact place.

A script is checked completely before any model work starts (README, "The script format"): a user who queued an
hour of sampling must not learn about a typo in shot 40 after shot 39 rendered. Problems are collected, not
raised one by one, and each names its place in the script the way a user reads it::

    shots[3].characters[1]: unknown character "Mira" (known: Ava, Bo)

Two passes run over the same input and their findings are merged: the structural pass (pydantic, types,
required fields, ranges) and the cross-field pass (names, references, files, limits), which works on the
raw data so that it still reports what it can when the structure is partly broken.
"""

from __future__ import annotations

import math
import re

from typing import Any, Optional

from pydantic import ValidationError

from .gc_pause import collector_paused
from .limits import (LIST_LIMITS, MAX_COLLECTED_PROBLEMS, MAX_FILE_NAME_LENGTH, MAX_SHOT_DURATION_S, MAX_TEXT_LENGTH,
                     MAX_TOTAL_DURATION_S, MAX_TOTAL_KEYFRAMES, MAX_TOTAL_REFERENCE_PIXELS, list_limit)
from .parsing import parse_script_text
from .problems import Problems, ScriptError, ScriptIssue, format_path, hidden_character, listed, name_key, shown
from .references import check_reference_file
from .schema import Character, Script, Shot

__all__ = ["ScriptError", "ScriptIssue", "format_path", "parse_script_text", "validate_script", "load_script"]


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

#: A number with an exponent (``1e3``, ``-2.5E-1``), which YAML 1.1 reads as text unless written ``1.0e+3``.
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(value: Any) -> str:
    return {bool: "true/false", str: "text", int: "a whole number", float: "a number", list: "a list",
            dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)


def _friendly(err: dict, loc: tuple) -> str:
    """pydantic's error in the script's words; user values are quoted through ``shown`` (short, escaped)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    fields = [p for p in loc if isinstance(p, str)]
    field = fields[-1] if fields else ""
    value = err.get("input")
    if kind in _TYPE_WORDS:
        said = f"expected {_TYPE_WORDS[kind]}, got {_type_name(value)}"
        if kind == "float_type" and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            # YAML 1.1 reads 1e3, 1.5e1 and 1e+3 as text: an exponent needs a decimal point and a sign (1.0e+3)
            said += (f" ('{shown(value)}': YAML reads a number with an exponent as text unless it has a decimal point "
                     "and a sign, 1.0e+3; or write the number out)")
        return said
    if kind == "enum":
        return f"'{shown(value)}' is not one of: {ctx.get('expected', '').replace(chr(39), '')}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_long":
        count = ctx.get("actual_length", len(value) if hasattr(value, "__len__") else "?")
        limit = LIST_LIMITS.get(tuple(fields[-2:]))
        return limit.too_many(count) if limit else f"{count} items is too many (at most {ctx.get('max_length')})"
    if kind == "string_too_long":
        return f"{len(value) if isinstance(value, str) else '?'} characters is too long (at most {ctx.get('max_length')} characters)"
    if field == "duration" and isinstance(value, float) and math.isnan(value):
        # NaN fails every comparison: it was told it was "too long for one shot (at most 600.0)" (an audit)
        return "must be a positive number of seconds, got nan"
    if kind in ("greater_than", "greater_than_equal") and field == "duration":
        return f"must be a positive number of seconds, got {shown(value)}"
    if kind == "less_than_equal" and field == "keyframes":
        return f"{shown(value)} keyframes in one shot is too many (at most {ctx.get('le')}); split the shot"
    if kind == "less_than_equal" and field == "duration":
        return f"{shown(value)} seconds is too long for one shot (at most {ctx.get('le')}); split the shot"
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else kind


def _written(raw: Any, loc: tuple) -> Any:
    """The value at ``loc`` (field names and list indices) of the script as written, or ``None``."""
    for part in loc:
        if isinstance(part, int) and isinstance(raw, list) and 0 <= part < len(raw):
            raw = raw[part]
        elif isinstance(part, str) and isinstance(raw, dict):
            raw = raw.get(part)
        else:
            return None
    return raw


def _structural_pass(raw: dict, problems: Problems) -> Optional[Script]:
    """The ``Script`` when the shape is right, else ``None`` with the problems added; pydantic runs once."""
    try:
        return Script.model_validate(raw)
    except ValidationError as e:
        errors = e.errors(include_url=False)
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
    for loc, errs in grouped.items():
        if len(problems.issues) >= MAX_COLLECTED_PROBLEMS:
            problems.more += 1
            continue
        field = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if len(errs) > 1:
            # A union: prefer the branch whose type matched but whose constraint failed.
            specific = [x for x in errs if not x["type"].endswith("_type") and x["type"] != "int_parsing"]
            message = _friendly(specific[0], loc) if specific else _UNION_HINTS.get(field, _friendly(errs[0], loc))
        else:
            err = errs[0]
            if err["type"] == "enum":  # pydantic holds the value as normalised ("pov" for POV): quote what was written
                written = _written(raw, loc)
                err = {**err, "input": written} if isinstance(written, str) else err
            message = _friendly(err, loc)
            if errs[0]["type"] == "extra_forbidden":
                parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), "")
                allowed = ", ".join(_FIELDS_OF.get(parent, Script).model_fields)
                message = f'unknown field "{shown(field)}" (allowed: {allowed})'
        problems.add(format_path(loc) or "script", message)
    return None


# ------------------------------------------------------------------------------------ cross-field pass


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _text(value: Any) -> Optional[str]:
    """A non-empty text value, stripped, or ``None``."""
    return value.strip() or None if isinstance(value, str) else None


def _hidden_problem(text: str) -> Optional[str]:
    found = hidden_character(text[:MAX_TEXT_LENGTH])  # longer text is refused for its length anyway
    if found is None:
        return None
    position, what = found
    return (f'"{shown(text)}" contains an invisible or control character ({what}) at position {position}; names, ids and '
            "titles must be plain visible text")


def _guarded(problems: Problems, path: str, check, *args) -> None:
    """Run one item's checks; anything unexpected becomes a problem at that item instead of a crash."""
    try:
        check(*args)
    except Exception as e:  # noqa: BLE001 - a script must never crash the validator
        problems.add(path, f"could not be checked ({type(e).__name__}: {shown(str(e))})")


class _CrossFieldPass:
    """Names, references, files and totals: rules that span fields, checked on the raw data so that they
    still report what they can when the structure is partly broken."""

    def __init__(self, raw: dict, input_dir: Optional[str], image_count: Optional[int], problems: Problems):
        self.raw, self.input_dir, self.image_count = raw, input_dir, image_count
        self.problems = problems
        self.known: dict[str, int] = {}  # name_key -> index in characters
        self.names: list[str] = []  # the names as written, by index (None when missing)
        self.files: dict[str, Optional[str]] = {}  # reference file -> its problem, each file checked once
        self.pixels: dict[str, int] = {}  # resolved reference file -> its pixels (a file named two ways counts once)
        self.seen_ids: dict[str, int] = {}  # shot id -> index in shots
        self.known_text = ""  # "Ava, Bo, ..." for messages about unknown names

    def add(self, path: str, message) -> None:
        self.problems.add(path, message)

    def run(self) -> None:
        title = _text(self.raw.get("title"))
        hidden = _hidden_problem(title) if title is not None else None
        if hidden:
            self.add("title", hidden)
        # A list longer than its limit is one structural problem; its items past the limit are not checked,
        # so the work here stays bounded by the limits, whatever the script's size.
        for i, ch in enumerate(_as_list(self.raw.get("characters"))[:list_limit("characters")]):
            _guarded(self.problems, f"characters[{i}]", self.character, i, ch)
        self.known_text = listed([n for n in self.names if n is not None]) or "none: the script has no characters"
        pixels = sum(self.pixels.values())
        if pixels > MAX_TOTAL_REFERENCE_PIXELS:
            self.add("characters", f"the reference photos ({len(self.pixels)} files) hold {pixels / 1e6:,.0f} megapixels "
                     f"in all, more than the limit of {MAX_TOTAL_REFERENCE_PIXELS / 1e6:,.0f} megapixels for one script; "
                     "use smaller copies (a face needs far fewer pixels)")
        total, seconds = 0, 0.0
        for s, shot in enumerate(_as_list(self.raw.get("shots"))[:list_limit("shots")]):
            _guarded(self.problems, f"shots[{s}]", self.shot, s, shot)
            total += _planned_keyframes(shot)
            seconds += _stated_seconds(shot)
        if total > MAX_TOTAL_KEYFRAMES:
            self.add("shots", f"the script plans {total} keyframes, more than the limit of {MAX_TOTAL_KEYFRAMES}")
        if seconds > MAX_TOTAL_DURATION_S:
            self.add("shots", f"the shots' durations add up to {seconds:,.0f} seconds ({seconds / 3600:.1f} hours), more "
                     f"than the limit of {MAX_TOTAL_DURATION_S:,.0f} seconds ({MAX_TOTAL_DURATION_S / 3600:.0f} hours) "
                     "for one movie; split it into several scripts")

    # Characters: unique names (after Unicode normalisation and case folding, since a script is written by
    # hand and look-alike names would confuse every reader), visible names, usable references.
    def character(self, i: int, ch: Any) -> None:
        name = _text(ch.get("name")) if isinstance(ch, dict) else None
        self.names.append(name)
        if not isinstance(ch, dict):
            return
        if name is not None:
            hidden = _hidden_problem(name)
            if hidden:
                self.add(f"characters[{i}].name", hidden)
            key = name_key(name)
            if key in self.known:
                j = self.known[key]
                same = self.names[j] == name or self.names[j].casefold() == name.casefold()
                how = "" if same else f': "{shown(self.names[j])}" is the same name once letter forms are normalised'
                self.add(f"characters[{i}].name", f'duplicate character "{shown(name)}" (also characters[{j}]){how}')
            elif not hidden:
                self.known[key] = i
        whose = f' (character "{shown(name, 40)}")' if name is not None else ""
        for j, ref in enumerate(_as_list(ch.get("references"))[:list_limit("characters", "references")]):
            problem = self.reference(ref)
            if problem:
                self.add(f"characters[{i}].references[{j}]", problem + whose)

    def reference(self, ref: Any) -> Optional[str]:
        if isinstance(ref, bool):
            return None  # the structural pass reports the type
        if isinstance(ref, int) and ref >= 0 and self.image_count is not None:
            if self.image_count == 0:
                return f"index {shown(ref)} refers to the IMAGE batch input, but no images are connected"
            if ref >= self.image_count:
                n = self.image_count
                return f"index {shown(ref)} is out of range: the IMAGE batch has {n} image(s) (0..{n - 1})"
        elif isinstance(ref, str) and 0 < len(ref.strip()) <= MAX_FILE_NAME_LENGTH and self.input_dir is not None:
            name = ref.strip()
            if name not in self.files:
                path, self.files[name], pixels = check_reference_file(self.input_dir, name)
                if path is not None:
                    self.pixels[path] = pixels
            return self.files[name]
        return None

    # Shots: unique ids, visible ids, known characters each at most once, keyframe counts that agree with
    # the actions.
    def shot(self, s: int, shot: Any) -> None:
        if not isinstance(shot, dict):
            return
        sid = shot.get("id")
        if isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid).strip():
            key = str(sid).strip()
            hidden = _hidden_problem(key)
            if hidden:
                self.add(f"shots[{s}].id", hidden)
            elif key in self.seen_ids:
                self.add(f"shots[{s}].id", f'duplicate shot id "{shown(key)}" (also shots[{self.seen_ids[key]}])')
            else:
                self.seen_ids[key] = s
        on_screen: set[str] = set()
        for j, name in enumerate(_as_list(shot.get("characters"))[:list_limit("shots", "characters")]):
            name = _text(name)
            if name is None:
                continue
            where = f"shots[{s}].characters[{j}]"
            hidden = _hidden_problem(name)
            key = name_key(name)
            if hidden:
                self.add(where, hidden)
            elif key not in self.known:
                self.add(where, lambda: f'unknown character "{shown(name)}" (known: {self.known_text})')
            elif key in on_screen:
                self.add(where, f'character "{shown(name)}" is listed twice')
            elif self.names[self.known[key]] != name:
                written = self.names[self.known[key]]
                if written.casefold() == name.casefold():
                    self.add(where, f'"{shown(name)}" differs in case from the character "{shown(written)}"')
                else:
                    self.add(where, f'"{shown(name)}" is written with other letter forms than the character '
                                    f'"{shown(written)}"; write the name exactly as in characters')
            on_screen.add(key)
        action, keyframes = shot.get("action"), shot.get("keyframes")
        if isinstance(action, list) and len(action) > 0 and isinstance(keyframes, int) and not isinstance(keyframes, bool):
            if keyframes != len(action):
                self.add(f"shots[{s}].keyframes", f"keyframes is {shown(keyframes)} but action lists {len(action)} sentences; "
                         "give one sentence per keyframe, or a single sentence")


def _planned_keyframes(shot: Any) -> int:
    """Keyframes a shot asks for, as far as its raw data tells (for the script's total)."""
    if not isinstance(shot, dict):
        return 1
    action, keyframes = shot.get("action"), shot.get("keyframes")
    if isinstance(keyframes, int) and not isinstance(keyframes, bool) and keyframes > 0:
        return min(keyframes, MAX_TOTAL_KEYFRAMES + 1)
    if isinstance(action, list):
        return max(len(action), 1)
    return 1


def _stated_seconds(shot: Any) -> float:
    """A shot's duration as far as its raw data tells (for the movie's total): a usable number, else 0 (the
    structural pass reports a missing or wrong duration; one past the per-shot limit counts as the limit)."""
    value = shot.get("duration") if isinstance(shot, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return 0.0
    return min(float(value), MAX_SHOT_DURATION_S)


def _cross_field_pass(raw: dict, input_dir: Optional[str], image_count: Optional[int], problems: Problems) -> None:
    _CrossFieldPass(raw, input_dir, image_count, problems).run()


# ------------------------------------------------------------------------------------------ entry points

_ORDER_CACHE: dict = {}


def _script_order(issue: ScriptIssue) -> tuple:
    """Sort key following the script's own order: ``shots[2].id`` before ``shots[2].scene`` before ``shots[10]``."""
    key, model = [], Script
    for token in issue.path.replace("]", "").replace("[", ".").split("."):
        if token.isdigit():
            key.append((0, int(token)))
            continue
        fields = _ORDER_CACHE.get(model)
        if fields is None:
            fields = _ORDER_CACHE[model] = {f: n for n, f in enumerate(model.model_fields)} if model else {}
        key.append((1, fields.get(token, len(fields))))
        model = {"characters": Character, "shots": Shot}.get(token) if model is Script else None
    return tuple(key)


@collector_paused
def validate_script(raw: Any, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> Script:
    """Validate parsed script data and return the ``Script``; raise ``ScriptError`` listing every problem.

    ``input_dir``: the folder that file references are resolved in (the host's input folder); ``None``
    skips file checks. ``image_count``: size of the IMAGE batch that index references point into (``0``
    when none is connected); ``None`` skips index checks. Nothing but ``ScriptError`` ever leaves here.
    """
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else _type_name(raw)
        raise ScriptError([ScriptIssue("script", f"expected a mapping with title, style, characters and shots; got {kind}")])
    # Each pass finds its problems in script order and keeps the first MAX_COLLECTED_PROBLEMS of them, so the
    # merged report starts with the script's first problems, whatever their number.
    structural, cross_field = Problems(), Problems()
    try:
        script = _structural_pass(raw, structural)
        _cross_field_pass(raw, input_dir, image_count, cross_field)
    except Exception as e:  # noqa: BLE001 - the last guard: a report, never a traceback
        raise ScriptError([ScriptIssue("script", f"could not be checked ({type(e).__name__}: {shown(str(e))})")]) from e
    if structural or cross_field:
        # Report in script order (title, style, characters, shots ...) without exact repeats.
        issues = sorted(dict.fromkeys(structural.issues + cross_field.issues), key=_script_order)
        raise ScriptError(issues, structural.more + cross_field.more)
    return script


@collector_paused
def load_script(text: str, *, input_dir: Optional[str] = None, image_count: Optional[int] = None) -> Script:
    """Parse JSON or YAML script text and validate it (see ``validate_script``)."""
    return validate_script(parse_script_text(text), input_dir=input_dir, image_count=image_count)
