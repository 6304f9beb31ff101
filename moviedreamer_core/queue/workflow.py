"""The API-format workflow: loading it, putting the script into ScriptEncode, overrides, the local script check."""

from __future__ import annotations

import json
from typing import Any, Optional

from ..text_files import NestedTooDeeply, TextFileError, loads_json, read_text_file
from .messages import _id_key

#: The largest workflow file read: an API-format workflow is a few kilobytes of node inputs (a script written into
#: ScriptEncode's text is at most about 1 MB); anything larger is not one.
MAX_WORKFLOW_BYTES = 64 * 2**20


#: node ids (class_type) whose ``script`` input receives the script; the first is the pack's ScriptEncode
SCRIPT_NODE_TYPES = ("ScriptEncode", "MovieDreamerScriptEncode")

NO_SCRIPT_FILE = "(none: use the text above)"  # ScriptEncode's script_file choice meaning "use the text"


class UsageError(Exception):
    """A problem with the command line, the workflow file or the script: exit code 2."""


def load_workflow(path: str) -> dict:
    """The API-format workflow in ``path`` (``{node_id: {"class_type", "inputs"}}``); UI format is refused.

    Read bounded (``text_files``: at most ``MAX_WORKFLOW_BYTES``, so ``/dev/zero`` or a huge file given by mistake is
    refused for its size) and parsed by ``text_files.loads_json``; every problem is a ``UsageError`` naming the file
    (exit 2), never a traceback."""
    try:
        data = loads_json(read_text_file(path, MAX_WORKFLOW_BYTES))
    except TextFileError as e:
        raise UsageError(f"the workflow {path} {e.said_with({'encoding': '; export it from ComfyUI (Workflow > Export (API))'})}")
    except json.JSONDecodeError as e:
        raise UsageError(f"the workflow {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    except NestedTooDeeply:
        raise UsageError(f"the workflow {path} is nested too deeply to be a workflow")
    except ValueError as e:  # a number of more digits than Python converts
        raise UsageError(f"the workflow {path} cannot be read: {str(e)[:200]}")
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict) and "nodes" not in data:
        data = data["prompt"]  # a saved POST body
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(f"{path} is a UI-format workflow (the canvas file); queue its API-format twin instead "
                         "(workflows/api/*_api.json, or in ComfyUI: Workflow > Export (API))")
    if not isinstance(data, dict) or not data or not all(
            isinstance(n, dict) and "class_type" in n and isinstance(n.get("inputs", {}), dict) for n in data.values()):
        raise UsageError(f"{path} is not an API-format workflow (expected {{node_id: {{\"class_type\": ..., "
                         "\"inputs\": {...}}})")
    return data


def script_nodes(prompt: dict) -> list[str]:
    return [nid for nid, node in prompt.items() if node.get("class_type") in SCRIPT_NODE_TYPES]


def inject_script(prompt: dict, text: str) -> list[str]:
    """Put ``text`` into every ScriptEncode node's ``script`` input and reset its ``script_file``; returns the ids."""
    ids = script_nodes(prompt)
    if not ids:
        raise UsageError("the workflow has no ScriptEncode node to give the script to "
                         f"(node types looked for: {', '.join(SCRIPT_NODE_TYPES)})")
    for nid in ids:
        inputs = prompt[nid].setdefault("inputs", {})
        inputs["script"] = text
        inputs["script_file"] = NO_SCRIPT_FILE
    return ids


def parse_value(text: str) -> Any:
    """``--set`` values: JSON when they parse as JSON (``30``, ``0.5``, ``true``, ``["4", 0]``), else the text."""
    try:
        return loads_json(text)
    except NestedTooDeeply:  # JSON, but past Python's parser: refused, not sent on as the text
        raise UsageError(f"the value {text[:40]!r}... is nested too deeply to be an input's value")
    except ValueError:
        return text


def apply_overrides(prompt: dict, overrides: list[str]) -> list[tuple[str, str, str]]:
    """``NODE_ID.input=value`` each; the node must exist (the input may be new, e.g. an optional one: that its node
    type has it is checked against the server, ``unknown_inputs``). Returns ``(item, node id, input)`` of each."""
    done = []
    for item in overrides:
        key, sep, value = item.partition("=")
        node_id, dot, name = key.partition(".")
        if not sep or not dot or not node_id.strip() or not name.strip():
            raise UsageError(f"--set {item!r}: expected NODE_ID.input=value, e.g. --set 9.steps=30")
        node_id, name = node_id.strip(), name.strip()
        if node_id not in prompt:
            raise UsageError(f"--set {item!r}: the workflow has no node {node_id!r} (nodes: {', '.join(sorted(prompt, key=_id_key))})")
        prompt[node_id].setdefault("inputs", {})[name] = parse_value(value)
        done.append((item, node_id, name))
    return done


def unknown_inputs(set_inputs: list[tuple[str, str, str]], prompt: dict, object_info: dict) -> Optional[str]:
    """The first ``--set`` naming an input its node type does not have on the server (``/object_info``), in words, or
    ``None``: the host drops a value given to an input its node does not declare, so ``--set 6.step=2`` (for
    ``steps``) rendered with the workflow's 20 steps and exited 0 (an audit). Links are left alone: the host passes
    those on (nodes with inputs of their own making take them)."""
    for item, node_id, name in set_inputs:
        if isinstance(prompt[node_id].get("inputs", {}).get(name), list):
            continue  # a link: the host passes a linked input its node does not declare (nodes with dynamic inputs)
        info = object_info.get(prompt[node_id].get("class_type"))
        if not isinstance(info, dict):
            continue  # a node type the server lacks is named on its own
        known = [n for part in ("required", "optional", "hidden") for n in ((info.get("input") or {}).get(part) or {})]
        if name not in known:
            return (f"--set {item!r}: node {node_id} ({prompt[node_id].get('class_type')}) has no input {name!r} "
                    f"(its inputs: {', '.join(known)})")
    return None


def apply_project(prompt: dict, project: str) -> list[str]:
    """Set every ``project_name`` input that is not fed by a link; returns the node ids changed."""
    changed = []
    for nid, node in prompt.items():
        inputs = node.get("inputs", {})
        if "project_name" in inputs and not isinstance(inputs["project_name"], list):
            inputs["project_name"] = project
            changed.append(nid)
    if not changed:
        raise UsageError("--project: the workflow has no project_name input to set")
    return changed


def check_scripts(prompt: dict, input_dir: Optional[str] = None, notes: Optional[list] = None) -> int:
    """Validate every literal script text in the workflow's ScriptEncode nodes with the pack's validator.

    Raises ``UsageError`` with the validator's full report. Returns the number of scripts checked. A node whose
    script comes through a link or from ``script_file`` (a file on the server) is left to the server. ``notes``:
    a list that receives ``"node N: <path>: <message>"`` for each of a valid script's notes (``script.check``'s
    ``off_screen_names``: actions naming a character the shot does not show).
    """
    from ..script import ScriptError, load_script
    from ..script.check import off_screen_names

    checked = 0
    for nid in script_nodes(prompt):
        inputs = prompt[nid].get("inputs", {})
        text = inputs.get("script")
        if not isinstance(text, str) or inputs.get("script_file", NO_SCRIPT_FILE) not in (NO_SCRIPT_FILE, None, ""):
            continue
        try:
            script = load_script(text, input_dir=input_dir)
        except ScriptError as e:
            raise UsageError(f"node {nid} ({prompt[nid]['class_type']}): {e}")
        if notes is not None:
            notes.extend(f"node {nid}: {n['path']}: {n['message']}" for n in off_screen_names(script))
        checked += 1
    return checked
