"""The pack's HTTP routes on the host's server, for the front-end (``js/``).

``POST /moviedreamer/validate_script`` with ``{"script": text, "script_file": name}``: the same validation
ScriptEncode runs at prompt time, as data (``moviedreamer_core.script.check``), so the script helper can show
problems and the character list while the user types. A ``script_file`` is resolved inside the input folder
and refused otherwise, exactly as ScriptEncode does.

The route never stalls the server and never answers 500. A body over ``MAX_REQUEST_BYTES`` is refused from
its declared length, or as soon as that much has arrived, before it is read whole; the body is parsed and the
script checked in a worker thread (``script_encode_node.off_the_loop``), at most ``MAX_PENDING`` at a time. Answers:

- 200: the script was checked (``{"ok", "issues", "problems", "characters", ...}``; ``issues`` lists at most
  50 problems, ``problems`` counts them all);
- 400: the request is not UTF-8 JSON of the form above (or is nested too deeply to be that);
- 413: the request is larger than ``MAX_REQUEST_BYTES``;
- 422: the ``script_file`` cannot be used (outside the input folder, missing, over the size limit, not UTF-8);
- 503: too many checks are already running; the editor asks again on the next pause in typing.

Every refusal has the same shape as a checked script's answer, with the reason in ``issues``.
"""

from __future__ import annotations

import json
import logging

from ..moviedreamer_core.script import ScriptError, ScriptIssue, check_script
from ..moviedreamer_core.script.check import issues_as_data
from ..moviedreamer_core.script.limits import MAX_REQUEST_BYTES
from ..moviedreamer_core.script.parsing import scan_json
from . import host

ROUTE = "/moviedreamer/validate_script"
#: Checks running or waiting at once; more are answered 503 rather than queued without end.
MAX_PENDING = 4
_pending = 0
_USAGE = 'send JSON: {"script": "<text>", "script_file": "<file in the input folder or empty>"}'


def _refusal(path: str, message: str) -> dict:
    return {"ok": False, "issues": [{"path": path, "message": message}], "problems": 1, "characters": []}


def _answer(status: int, path: str, message: str):
    from aiohttp import web

    return web.json_response(_refusal(path, message), status=status)


async def _read_body(request):
    """The request body as text, or ``(None, refusal)``: refused by its declared length, or as soon as more than
    ``MAX_REQUEST_BYTES`` have arrived, and refused unless it is UTF-8."""
    too_large = f"the request is larger than the limit of {MAX_REQUEST_BYTES:,} bytes"
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        return None, _answer(413, "request", too_large)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None, _answer(413, "request", too_large)
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, _answer(400, "request", f"the request is not UTF-8 text (byte at offset {e.start:,}); {_USAGE}")


def _parse_body(text: str):
    """``(script, script_file)`` from the body text, or ``None``. The body is scanned (depth, size) before
    ``json.loads``, so no body drives the parser's recursion."""
    try:
        scan_json(text)
        body = json.loads(text)
    except (ScriptError, ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    script, script_file = body.get("script") or "", body.get("script_file") or ""
    if not isinstance(script, str) or not isinstance(script_file, str):
        return None
    return script, script_file


def _check(body_text: str):
    """In a worker thread (the body is parsed there too: a body of megabytes takes a while to scan, and the event loop
    must stay free meanwhile): ``(status, answer)``."""
    from .script_encode_node import NO_FILE, _script_text

    body = _parse_body(body_text)
    if body is None:
        return 400, _refusal("request", _USAGE)
    script, script_file = body
    try:
        text, source = _script_text(script, script_file or NO_FILE)
    except ScriptError as e:
        return 422, {"ok": False, "issues": issues_as_data(e), "problems": e.count, "characters": []}
    try:
        result = check_script(text, input_dir=host.input_directory())
    except Exception as e:  # noqa: BLE001 - check_script answers as data; this is the last guard
        error = ScriptError([ScriptIssue("script", f"could not be checked ({type(e).__name__})")])
        result = {"ok": False, "issues": issues_as_data(error), "problems": 1, "characters": []}
    result["source"] = source
    return 200, result


async def validate_script(request):
    from aiohttp import web

    from .script_encode_node import off_the_loop

    global _pending
    text, refusal = await _read_body(request)
    if refusal is not None:
        return refusal
    if _pending >= MAX_PENDING:
        return _answer(503, "request", "the server is busy checking other scripts; try again in a moment")
    _pending += 1
    try:
        status, result = await off_the_loop(_check, text)
    finally:
        _pending -= 1
    return web.json_response(result, status=status)


def register() -> bool:
    """Add the routes to the running server (``main.py`` creates it before loading packs); ``False`` without one."""
    instance = host.prompt_server()
    if instance is None:
        return False
    try:
        instance.routes.post(ROUTE)(validate_script)
    except RuntimeError as e:  # the router is frozen once the app started: say so rather than fail the pack
        logging.warning("MovieDreamer: could not add %s: %s", ROUTE, e)
        return False
    return True
