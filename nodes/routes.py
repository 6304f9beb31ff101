"""The pack's HTTP routes on the host's server, for the front-end (``js/``).

``POST /moviedreamer/validate_script`` with ``{"script": text, "script_file": name}``: the same validation
ScriptEncode runs at prompt time, as data (``moviedreamer_core.script.check``), so the script helper can show
problems and the character list while the user types. A ``script_file`` is resolved inside the input folder
and refused otherwise, exactly as ScriptEncode does.
"""

from __future__ import annotations

import logging

from ..moviedreamer_core.script import ScriptError, check_script
from . import host

ROUTE = "/moviedreamer/validate_script"


async def validate_script(request):
    from aiohttp import web

    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("script", ""), str) \
            or not isinstance(body.get("script_file") or "", str):
        return web.json_response({"ok": False, "characters": [], "issues": [
            {"path": "", "message": 'send JSON: {"script": "<text>", "script_file": "<file in the input folder or empty>"}'}]},
            status=400)
    from .script_encode_node import NO_FILE, _script_text

    try:
        text, source = _script_text(body.get("script") or "", body.get("script_file") or NO_FILE)
    except ScriptError as e:
        return web.json_response({"ok": False, "characters": [], "issues": [{"path": i.path, "message": i.message}
                                                                          for i in e.issues]})
    result = check_script(text, input_dir=host.input_directory())
    result["source"] = source
    return web.json_response(result)


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
