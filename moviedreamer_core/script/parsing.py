"""Script text (JSON or YAML) to plain data, with bounded work and strict rules.

A script arrives from anywhere: pasted into a node, posted by an editor on every pause in typing, queued
over HTTP. Plain ``json.loads``/``yaml.safe_load`` are not enough for that: a YAML "billion laughs" (aliases
of aliases) expands a few hundred bytes into billions of values for whoever walks the result, 20,000 nested
lists drive the parsers' recursion to the interpreter's limit, a 5000-digit number trips Python's
integer-string limit, a duplicated key silently replaces the first, and a YAML ``!!set`` has no order.

So parsing here counts while it reads and stops at the limits of ``limits.py``:

- YAML goes through PyYAML's own parser (libyaml's when installed) and a *counting composer*: while the
  node graph is built it tracks nesting depth, counts every value with aliases expanded in full, and refuses
  tags, merge keys (``<<``), non-text keys, duplicate keys and over-long numbers, each at its place. The
  composer recurses once per nesting level, and never deeper than ``MAX_DEPTH``. Only a graph that passed
  is constructed (``SafeConstructor``: no Python objects; timestamps and ``=`` stay the text written).
- JSON is pre-scanned (one linear pass over its tokens, no recursion) for depth, size, duplicate keys and
  over-long numbers; only then does ``json.loads`` run.

Every refusal is a ``ScriptError`` naming the place (``shots[0].duration``, or ``script`` for the text as a
whole) and, where it helps, the line and column.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any, Optional

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingEndEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .limits import LIST_LIMITS, MAX_DEPTH, MAX_NUMBER_CHARS, MAX_SCRIPT_CHARS, MAX_SCRIPT_FILE_BYTES, MAX_VALUES
from ..text_files import TextFileError, read_text_file
from .gc_pause import collector_paused
from .problems import Problems, ScriptError, ScriptIssue, format_path, shown


@collector_paused
def parse_script_text(text: str) -> Any:
    """JSON or YAML text to plain data; every problem of the text itself becomes a ``ScriptError``.

    Text starting with ``{`` is read as JSON (its error messages are more precise); anything else as YAML.
    """
    if not isinstance(text, str) or not text.strip():
        raise ScriptError([ScriptIssue("script", "the script is empty")])
    if len(text) > MAX_SCRIPT_CHARS:
        raise ScriptError([ScriptIssue("script", f"the script is {len(text):,} characters long, more than the limit of "
                                       f"{MAX_SCRIPT_CHARS:,} characters (about 1 MB); split the movie into several scripts")])
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    return _parse_yaml(text)


def read_script_file(path: str, name: str, where: str = "script_file") -> str:
    """The text of a script file, refused by its size before it is read (and never read past the limit), and refused
    unless it is UTF-8 (``text_files.read_text_file``).

    ``name`` is the file as the user wrote it; ``where`` the place problems are reported at."""
    try:
        return read_text_file(path, MAX_SCRIPT_FILE_BYTES)
    except TextFileError as e:
        said = e.said_with({"size": " for a script file", "encoding": "; a script file is YAML or JSON saved as UTF-8"})
        raise ScriptError([ScriptIssue(where, f'"{shown(name)}" {shown(said, 400)}')]) from None


#: What stands for a list item that was counted but not composed (``compose_sequence_node``): a null.
_SKIPPED = ScalarNode("tag:yaml.org,2002:null", "", None, None)
_SKIPPED.md_size, _SKIPPED.md_height = 1, 0

#: The script's lists with a length limit (``limits.LIST_LIMITS``), by their place (a shot's or a character's
#: list: any index, written 0). A list longer than its limit is refused by its length and the validator reads only
#: its first ``limit`` items (``validate.py``), so the composer counts the items past the limit but does not
#: compose them.
_LIST_LIMITS = {limit.place: limit.limit for limit in LIST_LIMITS.values()}


def _list_limit(path: list) -> Optional[int]:
    """The limit of the list at ``path`` (the places of the nodes open above it), or ``None``."""
    if len(path) > 3:
        return None
    return _LIST_LIMITS.get(tuple(0 if type(p) is int else p for p in path))

class _Lines:
    """Line and column of offsets into one text; the line starts are found once, when first needed, so that
    naming the place of 100,000 problems costs no more than finding them."""

    def __init__(self, text: str):
        self.text = text
        self.starts: list[int] = []

    def __call__(self, pos: int) -> str:
        if not self.starts:
            self.starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self.starts, pos)
        return f"line {line}, column {pos - self.starts[line - 1] + 1}"


def line_column(text: str, pos: int) -> str:
    """``line 3, column 7`` (both from 1) for a character offset into ``text``."""
    return _Lines(text)(pos)


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep (mappings and lists inside each other; a script needs 4)"


def _too_many_values() -> str:
    return (f"the script holds more than {MAX_VALUES:,} values (mappings, lists, texts and numbers, each use of a "
            "YAML alias counted in full)")


def _long_number(length: int) -> str:
    return f"a number written with {length:,} characters is too long (at most {MAX_NUMBER_CHARS})"


# ------------------------------------------------------------------------------------------------- JSON

#: A JSON string, a structural character, or a number too long to be converted. A string's closing quote is optional:
#: an unterminated string then runs to the end of the text in one match (the text is invalid JSON, which ``json.loads``
#: reports). Were the quote required, every quote inside it (``{"\"\"\"...``) would start another scan to the end:
#: quadratic, minutes for a megabyte.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{},:]|-?[0-9][0-9.eE+-]{%d,}' % MAX_NUMBER_CHARS, re.DOTALL)


def _parse_json(text: str) -> Any:
    problems = scan_json(text)
    try:
        # Long numbers were reported by the scan; they are never converted (Python's int-string limit).
        data = json.loads(text, parse_int=lambda s: int(s) if len(s) <= MAX_NUMBER_CHARS else 0)
    except json.JSONDecodeError as e:
        raise ScriptError([ScriptIssue("script", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")])
    except (ValueError, RecursionError) as e:
        raise problems.error() if problems else ScriptError([ScriptIssue("script", f"invalid JSON: {shown(str(e))}")])
    if problems:
        raise problems.error()
    return data


def _json_path(stack: list) -> str:
    return format_path([frame[1] for frame in stack if frame[1] is not None]) or "script"


def scan_json(text: str) -> Problems:
    """One pass over JSON's tokens: raise at the depth and size limits; return duplicate keys and long numbers.

    A frame per open container: ``[is_object, current key or index, keys seen (object), expecting a key]``.
    Values are counted by their containers and separators: each value but the first of a container follows
    a comma."""
    problems = Problems()
    where = _Lines(text)
    stack: list[list] = []
    values = 1
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        first = token[0]
        if first == '"':
            frame = stack[-1] if stack else None
            if frame is not None and frame[0] and frame[3]:
                key = _json_key(token)
                frame[1] = key
                seen = frame[2].get(key)
                if seen is None:
                    frame[2][key] = m.start()
                else:
                    problems.add(lambda: _json_path(stack), lambda: f"given twice ({where(seen)} and {where(m.start())}); "
                                 "each key may appear only once")
        elif first in "[{":
            if len(stack) >= MAX_DEPTH:
                raise ScriptError([ScriptIssue(_json_path(stack), f"{_too_deep()} ({where(m.start())})")])
            stack.append([True, None, {}, True] if first == "{" else [False, 0, None, False])
            values += 1
        elif first in "]}":
            if stack:
                stack.pop()
        elif first == ",":
            values += 1
            if stack:
                frame = stack[-1]
                if frame[0]:
                    frame[3] = True
                else:
                    frame[1] += 1
        elif first == ":":
            if stack and stack[-1][0]:
                stack[-1][3] = False
        else:
            problems.add(lambda: _json_path(stack), lambda: f"{_long_number(len(token))} ({where(m.start())})")
        if values > MAX_VALUES:
            raise ScriptError([ScriptIssue("script", _too_many_values())])
    return problems


def _json_key(token: str) -> str:
    if "\\" not in token:
        return token[1:-1]
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1]


# ------------------------------------------------------------------------------------------------- YAML

_YAML = "tag:yaml.org,2002:"
#: Tags a script may write: ``!!str`` forces text (``id: !!str 007``); the collection tags change nothing.
_WRITABLE_TAGS = frozenset({_YAML + "str", _YAML + "seq", _YAML + "map"})
_NUMBER_TAGS = frozenset({_YAML + "int", _YAML + "float"})
#: What PyYAML's reader refuses; found first so that the message has a line and a column.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


class _Refused(Exception):
    """Composing stopped at a work limit (depth, size, an alias loop)."""

    def __init__(self, issue: ScriptIssue):
        super().__init__(str(issue))
        self.issue = issue


def _tag_text(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


class _CountingComposer(Composer):
    """PyYAML's composer, counting: depth, values (aliases in full), and the place of every node.

    ``md_problems`` collects what is wrong but bounded (tags, duplicate keys, long numbers); ``_Refused`` stops
    at what would cost unbounded work. Each node carries ``md_size`` (its values, aliases expanded) and
    ``md_height`` (its nesting), so an alias is charged in full without being walked."""

    def __init__(self):
        Composer.__init__(self)
        self.md_problems = Problems()
        self.md_path: list = []
        self.md_values = 0
        self.md_depth = 0
        self.md_open: set[int] = set()

    # -- bookkeeping

    def _place(self, mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    def _here(self) -> str:
        return format_path([p for p in self.md_path if p is not None]) or "script"

    def _issue(self, message: str, mark) -> None:
        self.md_problems.add(self._here, lambda: f"{message} ({self._place(mark)})")

    def _refuse(self, message: str, mark, path: bool = True) -> None:
        raise _Refused(ScriptIssue(self._here() if path else "script", f"{message} ({self._place(mark)})"))

    def _count(self, values: int, mark) -> None:
        self.md_values += values
        if self.md_values > MAX_VALUES:
            self._refuse(_too_many_values(), mark, path=False)

    # -- composing (the hot path: a few attribute look-ups per value; PyYAML's path resolvers, which this
    # loader never registers, are not consulted)

    def compose_node(self, parent, index):
        event = self.peek_event()
        kind = type(event)
        if kind is AliasEvent:
            self.get_event()
            node = self.anchors.get(event.anchor)
            if node is None:
                raise ComposerError(None, None, f"found undefined alias {shown(event.anchor)}", event.start_mark)
            if id(node) in self.md_open:
                self._refuse(f"the alias *{shown(event.anchor, 40)} refers to a value that contains it", event.start_mark)
            if self.md_depth + node.md_height > MAX_DEPTH:
                self._refuse(_too_deep(), event.start_mark)
            self._count(node.md_size, event.start_mark)
            return node
        anchor, tag = event.anchor, event.tag
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {shown(anchor)}; first occurrence", self.anchors[anchor].start_mark,
                                "second occurrence", event.start_mark)
        if tag is not None and tag != "!" and tag not in _WRITABLE_TAGS:
            self._issue(f"the YAML tag {shown(_tag_text(tag))} is not allowed: a script holds only text, numbers, "
                        "true/false, lists and mappings (!!str is the one tag allowed)", event.start_mark)
        if kind is ScalarEvent:
            self.get_event()
            self.md_values += 1
            if self.md_values > MAX_VALUES:
                self._count(0, event.start_mark)
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_CHARS:
                self._issue(_long_number(len(event.value)), event.start_mark)
                tag = _YAML + "str"
            node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
            node.md_size, node.md_height = 1, 0
            if anchor is not None:
                self.anchors[anchor] = node
            return node
        before = self.md_values
        node = self.compose_sequence_node(anchor) if kind is SequenceStartEvent else self.compose_mapping_node(anchor)
        node.md_size = self.md_values - before
        return node

    def _open(self, node_class, anchor):
        start = self.get_event()
        self.md_depth += 1
        if self.md_depth > MAX_DEPTH:
            self._refuse(_too_deep(), start.start_mark)
        self._count(1, start.start_mark)
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(node_class, None, start.implicit)
        node = node_class(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        self.md_open.add(id(node))
        self.md_path.append(None)  # the place inside this node, set per item
        return node

    def _close(self, node, height: int):
        node.end_mark = self.get_event().end_mark
        node.md_height = height + 1
        self.md_open.discard(id(node))
        self.md_path.pop()
        self.md_depth -= 1
        return node

    def compose_sequence_node(self, anchor):
        node = self._open(SequenceNode, anchor)
        items, path = node.value, self.md_path
        height, last = 0, len(path) - 1
        # a list beyond its limit is refused by its length alone: its extra items are counted, not composed
        limit = _list_limit(path[:last])
        while not self.check_event(SequenceEndEvent):
            if limit is not None and len(items) > limit:
                items.append(self._skipped_item())
                continue
            path[last] = len(items)
            item = self.compose_node(node, None)
            items.append(item)
            if item.md_height > height:
                height = item.md_height
        return self._close(node, height)

    def _skipped_item(self):
        """Consume one list item's events without composing it; a placeholder stands for it. Its values still
        count towards ``MAX_VALUES`` (an alias as much as what it expands to, as ``compose_node`` counts it), and
        a value with an anchor is composed as usual, so a later alias to it still means what was written. For the
        items of a list already over its limit (``_LIST_LIMITS``), which the validator refuses by the list's
        length and never reads: a megabyte of them is answered in a fraction of the time composing them takes."""
        depth = 0
        while True:
            event = self.peek_event()
            if isinstance(event, CollectionEndEvent):
                self.get_event()
                depth -= 1
            elif isinstance(event, AliasEvent):
                self.get_event()
                target = self.anchors.get(event.anchor)
                self._count(target.md_size if target is not None else 1, event.start_mark)
            elif event.anchor is not None:
                self.compose_node(None, None)
            else:
                self.get_event()
                self._count(1, event.start_mark)
                depth += isinstance(event, CollectionStartEvent)
            if depth == 0:
                return _SKIPPED

    def compose_mapping_node(self, anchor):
        node = self._open(MappingNode, anchor)
        pairs, path = node.value, self.md_path
        height, last = 0, len(path) - 1
        seen: dict[tuple, Any] = {}
        while not self.check_event(MappingEndEvent):
            key_event = self.peek_event()
            path[last] = None
            key = self.compose_node(node, None)
            name = self._key_name(key, key_event)
            if name is not None:
                first = seen.setdefault((key.tag, key.value), key.start_mark)
                if first is not key.start_mark:
                    path[last] = name
                    self.md_problems.add(self._here, lambda: f"given twice ({self._place(first)} and "
                                         f"{self._place(key.start_mark)}); each key may appear only once")
            path[last] = name if name is not None else "?"
            value = self.compose_node(node, key)
            pairs.append((key, value))
            if value.md_height > height:
                height = value.md_height
        return self._close(node, height)

    def _key_name(self, key, event):
        """The key as text, or ``None`` after reporting a key a script cannot have."""
        if isinstance(event, AliasEvent) or not isinstance(key, ScalarNode):
            self._issue("a key must be plain text (not a list, a mapping or an alias)", event.start_mark)
            return None
        if key.tag == _YAML + "merge":
            self._issue("YAML merge keys (<<) are not supported; write the fields out", event.start_mark)
            return None
        return key.value


class _ScriptConstructor(SafeConstructor):
    """PyYAML's safe constructor (plain data only) whose timestamps and ``=`` stay the text written, so
    ``title: 2024-05-01`` is a title and nothing in a script depends on the time zone."""


_ScriptConstructor.add_constructor(_YAML + "timestamp", SafeConstructor.construct_yaml_str)
_ScriptConstructor.add_constructor(_YAML + "value", SafeConstructor.construct_yaml_str)

class _PythonLoader(Reader, Scanner, Parser, _CountingComposer, _ScriptConstructor, Resolver):
    """PyYAML's pure-Python parser feeding the counting composer (when libyaml is not installed)."""

    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _CountingComposer.__init__(self)
        _ScriptConstructor.__init__(self)
        Resolver.__init__(self)


try:
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml on the common platforms
    CParser = None

if CParser is not None:
    class _LibyamlLoader(_CountingComposer, CParser, _ScriptConstructor, Resolver):
        """libyaml's parser (C, several times faster) feeding the counting composer."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            _CountingComposer.__init__(self)
            _ScriptConstructor.__init__(self)
            Resolver.__init__(self)

#: The loaders a script can be read with, fastest first; ``parse_script_text`` uses the first.
YAML_LOADERS = ([_LibyamlLoader] if CParser is not None else []) + [_PythonLoader]


def _char_at(text: str, line: int, column: int) -> str:
    """The character at 0-based ``line`` and ``column`` of ``text`` ("" past the end); splits no more lines than it needs."""
    lines = text.split("\n", line + 1)
    return lines[line][column:column + 1] if line < len(lines) else ""


def _parse_yaml(text: str, loader_class=None) -> Any:
    bad = _NON_PRINTABLE.search(text)
    if bad:
        code = f"U+{ord(bad.group()):04X}"
        raise ScriptError([ScriptIssue("script", f"invalid YAML at {line_column(text, bad.start())}: the control character "
                                       f"{code} is not allowed in YAML text; remove it (or write it as an escape inside "
                                       "double quotes)")])
    loader = (loader_class or YAML_LOADERS[0])(text)
    try:
        node = loader.get_single_node()
        if loader.md_problems:
            raise loader.md_problems.error()
        return None if node is None else loader.construct_document(node)
    except _Refused as e:
        raise ScriptError([e.issue])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if mark is not None and "tab" not in problem and _char_at(text, mark.line, mark.column) == "\t":
            problem += " (a tab: YAML is indented with spaces, not tabs)"
        raise ScriptError([ScriptIssue("script", f"invalid YAML{where}: {shown(problem, 200)}")])
    finally:
        loader.dispose()
