"""Queue a MovieDreamer workflow on a running ComfyUI server from the command line.

::

    python -m moviedreamer_core.queue workflows/api/moviedreamer_movie_api.json --script my_script.yaml \
        --server http://127.0.0.1:8188 [--project NAME] [--set 9.steps=30] [--input-dir DIR] [--output-dir DIR]

What it does, in order:

1. loads the API-format workflow (the ``*_api.json`` twins in ``workflows/api/``, or "Export (API)" in ComfyUI);
2. reads the script, validates it with the pack's own validator (``moviedreamer_core.script``) and reports
   every problem before anything is queued; the script text goes into every ScriptEncode node's ``script``
   input (and its ``script_file`` is reset to "use the text");
3. applies ``--set NODE_ID.input=value`` overrides (values are JSON when they parse as JSON, else text) and
   ``--project NAME`` (every ``project_name`` input);
4. POSTs ``/prompt`` and follows the run on the server's websocket (``/ws?clientId=...``; polling ``/history``
   when the websocket is not available), printing per-node progress on stderr;
5. prints the files the run wrote (``images``/``gifs``/``videos``/``audio`` outputs, and paths that the nodes'
   text reports name) and the nodes' texts on stdout.

Exit codes: 0 success, 2 usage or script errors, 3 no server at the URL, 4 the server refused the prompt
(validation: bad input, missing model file), 5 the run failed (execution error, interrupted, timeout).

Standard library only (plus the script validator); no import of ComfyUI or of ``nodes/``.

Modules: ``workflow`` (load, inject, overrides, the local script check), ``client`` (HTTP), ``websocket``
(a minimal RFC 6455 client), ``progress`` (following a run), ``outputs`` (what it wrote), ``messages``
(readable refusals and errors), ``cli`` (arguments and exit codes).
"""

from .cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, build_parser, main
from .client import Client, ServerUnreachable, fetch_object_info
from .messages import (check_choices, combo_options, format_execution_error, format_node_error, format_not_sent,
                       format_refusal, model_folder, node_label, unreachable_message)
from .outputs import history_error, history_interrupted, output_files, output_texts
from .progress import ProgressPrinter, follow
from .websocket import WebSocket, websocket_url
from .workflow import (NO_SCRIPT_FILE, SCRIPT_NODE_TYPES, UsageError, apply_overrides, apply_project, check_scripts,
                       inject_script, load_workflow, parse_value, script_nodes)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_USAGE", "build_parser", "main", "Client",
           "ServerUnreachable", "fetch_object_info", "check_choices", "combo_options", "format_execution_error",
           "format_node_error", "format_not_sent", "format_refusal", "model_folder", "node_label", "unreachable_message", "history_error",
           "history_interrupted", "output_files", "output_texts", "ProgressPrinter", "follow", "WebSocket", "websocket_url",
           "NO_SCRIPT_FILE", "SCRIPT_NODE_TYPES", "UsageError", "apply_overrides", "apply_project", "check_scripts",
           "inject_script", "load_workflow", "parse_value", "script_nodes"]
