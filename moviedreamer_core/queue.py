"""Queue a MovieDreamer workflow on a running ComfyUI server from the command line.

::

    python -m moviedreamer_core.queue workflows/moviedreamer_movie_api.json --script my_script.yaml \\
        --server http://127.0.0.1:8188 [--project NAME] [--set 9.steps=30] [--input-dir DIR] [--output-dir DIR]

What it does, in order:

1. loads the API-format workflow (the ``*_api.json`` twins in ``workflows/``, or "Export (API)" in ComfyUI);
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
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Optional

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_FAILED = 0, 2, 3, 4, 5

#: node ids (class_type) whose ``script`` input receives the script; the first is the pack's ScriptEncode
SCRIPT_NODE_TYPES = ("ScriptEncode", "MovieDreamerScriptEncode")
NO_SCRIPT_FILE = "(none: use the text above)"  # ScriptEncode's script_file choice meaning "use the text"
FILE_OUTPUT_KEYS = ("images", "gifs", "videos", "video", "audio", "animated", "files", "3d")
MEDIA_EXTENSIONS = ("mp4", "webm", "mov", "mkv", "avi", "gif", "png", "jpg", "jpeg", "webp", "wav", "flac", "mp3", "ogg")
_TEXT_PATH = re.compile(r"((?:[A-Za-z]:)?[\\/][^\n]*?\.(?:%s))(?=$|\s|[,;)\]])" % "|".join(MEDIA_EXTENSIONS), re.I)

#: model folder of a missing file, by input name (and by class for names several loaders share)
MODEL_FOLDERS = {
    "ckpt_name": "checkpoints", "unet_name": "diffusion_models", "vae_name": "vae", "lora_name": "loras",
    "control_net_name": "controlnet", "style_model_name": "style_models", "upscale_model": "upscale_models",
    "upscale_model_name": "upscale_models", "gligen_name": "gligen", "hypernetwork_name": "hypernetworks",
    "clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders",
    "clip_name4": "text_encoders", "ipadapter_file": "ipadapter", "planner_name": "moviedreamer",
    "renderer_name": "moviedreamer", "model_name": "checkpoints", "audio_encoder_name": "audio_encoders",
}
CLASS_MODEL_FOLDERS = {("CLIPVisionLoader", "clip_name"): "clip_vision", ("CLIPLoader", "clip_name"): "text_encoders",
                       ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints"}
INPUT_FOLDER_INPUTS = {"image", "video", "audio", "file", "script_file"}


class UsageError(Exception):
    """A problem with the command line, the workflow file or the script: exit code 2."""


class ServerUnreachable(Exception):
    """No answer at the server URL: exit code 3."""


# ------------------------------------------------------------------------------------------ the workflow


def load_workflow(path: str) -> dict:
    """The API-format workflow in ``path`` (``{node_id: {"class_type", "inputs"}}``); UI format is refused."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read the workflow {path}: {e.strerror or e}")
    except json.JSONDecodeError as e:
        raise UsageError(f"the workflow {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict) and "nodes" not in data:
        data = data["prompt"]  # a saved POST body
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(f"{path} is a UI-format workflow (the canvas file); queue its API-format twin instead "
                         "(workflows/*_api.json, or in ComfyUI: Workflow > Export (API))")
    if not isinstance(data, dict) or not data or not all(
            isinstance(n, dict) and "class_type" in n and isinstance(n.get("inputs", {}), dict) for n in data.values()):
        raise UsageError(f"{path} is not an API-format workflow (expected {{node_id: {{\"class_type\": ..., "
                         "\"inputs\": {...}}}}})")
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
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(prompt: dict, overrides: list[str]) -> None:
    """``NODE_ID.input=value`` each; the node must exist (the input may be new, e.g. an optional one)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        node_id, dot, name = key.partition(".")
        if not sep or not dot or not node_id.strip() or not name.strip():
            raise UsageError(f"--set {item!r}: expected NODE_ID.input=value, e.g. --set 9.steps=30")
        node_id, name = node_id.strip(), name.strip()
        if node_id not in prompt:
            raise UsageError(f"--set {item!r}: the workflow has no node {node_id!r} (nodes: {', '.join(sorted(prompt, key=_id_key))})")
        prompt[node_id].setdefault("inputs", {})[name] = parse_value(value)


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


def check_scripts(prompt: dict, input_dir: Optional[str] = None) -> int:
    """Validate every literal script text in the workflow's ScriptEncode nodes with the pack's validator.

    Raises ``UsageError`` with the validator's full report. Returns the number of scripts checked. A node whose
    script comes through a link or from ``script_file`` (a file on the server) is left to the server.
    """
    from .script import ScriptError, load_script

    checked = 0
    for nid in script_nodes(prompt):
        inputs = prompt[nid].get("inputs", {})
        text = inputs.get("script")
        if not isinstance(text, str) or inputs.get("script_file", NO_SCRIPT_FILE) not in (NO_SCRIPT_FILE, None, ""):
            continue
        try:
            load_script(text, input_dir=input_dir)
        except ScriptError as e:
            raise UsageError(f"node {nid} ({prompt[nid]['class_type']}): {e}")
        checked += 1
    return checked


def node_label(prompt: dict, node_id: Any) -> str:
    """``node 9 IdentityDiffusionRender`` (plus the title when the workflow gives one that differs)."""
    node = prompt.get(str(node_id)) or {}
    cls = node.get("class_type", "?")
    title = (node.get("_meta") or {}).get("title")
    return f"node {node_id} {cls}" + (f" \"{title}\"" if title and title != cls else "")


def _id_key(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


# ------------------------------------------------------------------------------------------ error messages


def model_folder(class_type: str, input_name: str) -> Optional[str]:
    """The models folder a file-name input reads (``ckpt_name`` -> ``checkpoints``), or None if unknown."""
    return CLASS_MODEL_FOLDERS.get((class_type, input_name)) or MODEL_FOLDERS.get(input_name)


def _choices_preview(config: Any, limit: int = 6) -> str:
    options = None
    if isinstance(config, list) and config:
        options = config[0] if isinstance(config[0], list) else (config[1] or {}).get("options") if len(config) > 1 and isinstance(config[1], dict) else None
    if not isinstance(options, list):
        return ""
    if not options:
        return "; the server has none there"
    shown = ", ".join(str(o) for o in options[:limit])
    return f"; the server has: {shown}" + (f" (+{len(options) - limit} more)" if len(options) > limit else "")


def format_node_error(node_id: str, class_type: str, err: dict) -> str:
    """One readable line for one validation error of one node."""
    extra = err.get("extra_info") or {}
    name = extra.get("input_name") or ""
    where = f"node {node_id} ({class_type})" + (f" input {name}" if name else "")
    kind = err.get("type", "")
    if kind == "value_not_in_list" and name:
        value = extra.get("received_value")
        preview = _choices_preview(extra.get("input_config"))
        value_text = value if isinstance(value, str) else json.dumps(value)
        if name.startswith("renderer_name") and isinstance(value, str) and value.startswith("ipadapter/"):
            return (f"{where}: model file \"{value[len('ipadapter/'):]}\" not found: put it in models/ipadapter/ "
                    f"on the server (or a folder extra_model_paths.yaml adds){preview}")
        folder = model_folder(class_type, name)
        if folder:
            return (f"{where}: model file \"{value_text}\" not found: put it in models/{folder}/ on the server "
                    f"(or a folder extra_model_paths.yaml adds){preview}")
        if name in INPUT_FOLDER_INPUTS:
            return f"{where}: file \"{value_text}\" not found in the server's input folder{preview}"
        return f"{where}: \"{value_text}\" is not one of the allowed values{preview}"
    message = err.get("message") or kind or "error"
    details = err.get("details") or ""
    return f"{where}: {message}" + (f": {details}" if details and details not in (message, name) else "")


def format_refusal(body: Any, prompt: Optional[dict] = None) -> str:
    """The server's HTTP 400 answer to ``POST /prompt`` as text: a headline and one line per node error."""
    if not isinstance(body, dict):
        return f"the server refused the prompt: {body}"
    lines = []
    error = body.get("error")
    node_errors = body.get("node_errors") or {}
    if isinstance(error, dict):
        head = error.get("message") or error.get("type") or "the prompt was refused"
        details = error.get("details")
        if details and not node_errors:
            head += f": {details}"
        lines.append(f"the server refused the prompt: {head}")
    elif error:
        lines.append(f"the server refused the prompt: {error}")
    else:
        lines.append("the server refused the prompt")
    for nid in sorted(node_errors, key=_id_key):
        entry = node_errors[nid] or {}
        cls = entry.get("class_type") or ((prompt or {}).get(str(nid)) or {}).get("class_type", "?")
        errs = entry.get("errors") or []
        if not errs:
            lines.append(f"  node {nid} ({cls}): refused")
        for err in errs:
            text = format_node_error(str(nid), cls, err)
            first, *rest = text.split("\n")
            lines.append("  " + first)
            lines.extend("    " + r.strip() for r in rest if r.strip())
    return "\n".join(lines)


_MISSING_MODEL = re.compile(r"Model in folder '([^']+)' with filename '([^']+)' not found")


def format_execution_error(data: dict, prompt: Optional[dict] = None) -> str:
    """The ``execution_error`` message as one line naming the node; a missing model file names its folder."""
    nid = data.get("node_id")
    cls = data.get("node_type") or ((prompt or {}).get(str(nid)) or {}).get("class_type", "?")
    message = str(data.get("exception_message") or "").strip()
    text = f"the run failed in node {nid} ({cls}): {data.get('exception_type', 'error')}: {message}"
    missing = _MISSING_MODEL.search(message)
    if missing:
        text += f"\n  model file \"{missing.group(2)}\" is missing: put it in models/{missing.group(1)}/ on the server"
    return text


def combo_options(spec: Any) -> Optional[list]:
    """The choices of a combo input spec from ``/object_info`` (``[[...], {...}]`` or ``["COMBO", {"options": [...]}]``)."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return spec[1]["options"]
    return None


def check_choices(prompt: dict, object_info: dict) -> dict:
    """Literal combo values that are not among the server's choices, as ``node_errors`` in the server's own
    format (``value_not_in_list``). The host validates list-style combos itself, but not every V3 ``COMBO``
    (e.g. the pack's planner and renderer file names), so a missing model file is caught here before queueing.
    Inputs fed by links, empty choice lists and annotated names (``x.png [output]``) are left to the server."""
    node_errors: dict = {}
    for nid, node in prompt.items():
        info = object_info.get(node.get("class_type"))
        if not isinstance(info, dict):
            continue
        specs = {**(info.get("input") or {}).get("required", {}), **(info.get("input") or {}).get("optional", {})}
        for name, value in (node.get("inputs") or {}).items():
            options = combo_options(specs.get(name))
            if options is None or isinstance(value, list) or value in options:
                continue
            if not options and not model_folder(node["class_type"], name):
                continue  # choices the server fills in elsewhere (remote lists)
            if isinstance(value, str) and re.search(r" \[(output|input|temp)\]$", value):
                continue
            entry = node_errors.setdefault(nid, {"errors": [], "dependent_outputs": [], "class_type": node["class_type"]})
            entry["errors"].append({"type": "value_not_in_list", "message": "Value not in list",
                                    "details": f"{name}: {value!r} not in the server's list",
                                    "extra_info": {"input_name": name, "input_config": specs.get(name), "received_value": value}})
    return node_errors


def unreachable_message(url: str, reason: Any = "") -> str:
    why = f" ({reason})" if reason else ""
    return (f"no ComfyUI server at URL: {url}{why}; start it with python main.py in your ComfyUI folder "
            "(add --listen/--port to match), or pass --server URL")


# ------------------------------------------------------------------------------------------ HTTP


class Client:
    """The few HTTP calls the CLI makes, with ``urllib``."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, path: str, body: Optional[dict] = None) -> tuple[int, Any]:
        """``(status, parsed JSON or text)``; connection failures raise ``ServerUnreachable``."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
            raise ServerUnreachable(getattr(e, "reason", None) or e)
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def history(self, prompt_id: str) -> Optional[dict]:
        status, body = self.request(f"/history/{urllib.parse.quote(prompt_id)}")
        if status == 200 and isinstance(body, dict):
            return body.get(prompt_id)
        return None


# ------------------------------------------------------------------------------------------ websocket


class WebSocket:
    """A minimal RFC 6455 client (text frames, ping/pong, close) over a plain or TLS socket; standard library."""

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        port = parts.port or (443 if secure else 80)
        self.sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if secure:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=parts.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the websocket during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101" not in status:
            raise ConnectionError(f"websocket upgrade refused: {status}")
        self.closed = False
        self._fragments: list[bytes] = []

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _frame(self) -> Optional[tuple[bool, int, bytes]]:
        """One whole frame from the buffer, or None if more bytes are needed (the buffer is left intact)."""
        b = self.buf
        if len(b) < 2:
            return None
        fin, opcode = bool(b[0] & 0x80), b[0] & 0x0F
        masked, n, pos = bool(b[1] & 0x80), b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        mask = b""
        if masked:
            if len(b) < pos + 4:
                return None
            mask, pos = b[pos:pos + 4], pos + 4
        if len(b) < pos + n:
            return None
        payload = b[pos:pos + n]
        if masked:
            payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
        self.buf = b[pos + n:]
        return fin, opcode, payload

    def receive(self, timeout: float) -> Optional[Any]:
        """The next message (text decoded as JSON when possible; binary frames are skipped), or None on timeout.

        Raises ``ConnectionError`` when the connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    return None
                if not chunk:
                    self.closed = True
                    raise ConnectionError("the server closed the websocket")
                self.buf += chunk
                continue
            fin, opcode, payload = frame
            if opcode == 0x8:
                self.closed = True
                raise ConnectionError("the server closed the websocket")
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2, 0x0):
                self._fragments.append(payload)
                if opcode != 0x0:
                    self._kind = opcode
                if not fin:
                    continue
                data, self._fragments = b"".join(self._fragments), []
                if getattr(self, "_kind", 0x1) != 0x1:
                    continue  # binary: preview images
                try:
                    return json.loads(data.decode("utf-8"))
                except ValueError:
                    continue

    def close(self) -> None:
        if not self.closed:
            try:
                self._send(0x8, struct.pack("!H", 1000))
            except OSError:
                pass
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def websocket_url(server: str, client_id: str) -> str:
    parts = urllib.parse.urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    base = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"{base}/ws", f"clientId={client_id}", ""))


# ------------------------------------------------------------------------------------------ following a run


class ProgressPrinter:
    """Turns websocket messages of one prompt into short lines on ``out`` (stderr)."""

    def __init__(self, prompt: dict, out=None):
        self.prompt = prompt
        self.out = out or sys.stderr
        self.started: list[str] = []
        self.last = None

    def line(self, text: str) -> None:
        if text != self.last:
            print(text, file=self.out, flush=True)
            self.last = text

    def handle(self, event: str, data: dict) -> None:
        n = len(self.prompt)
        if event == "execution_cached":
            nodes = [str(x) for x in data.get("nodes") or []]
            if nodes:
                self.line(f"cached (unchanged since the last run): {', '.join(sorted(nodes, key=_id_key))}")
        elif event == "executing" and data.get("node") is not None:
            nid = str(data["node"])
            if nid not in self.started:
                self.started.append(nid)
            self.line(f"[{len(self.started)}/{n}] {node_label(self.prompt, nid)}")
        elif event == "progress":
            nid = data.get("node")
            self.line(f"      {node_label(self.prompt, nid)}: step {data.get('value')}/{data.get('max')}")
        elif event == "moviedreamer.keyframe":
            self.line(f"      keyframe {int(data.get('index', 0)) + 1}/{data.get('total')} (shot {data.get('shot')}): "
                      f"{data.get('action', '')}")
        elif event == "execution_interrupted":
            self.line(f"interrupted in {node_label(self.prompt, data.get('node_id'))}")


def follow(client: Client, ws: Optional[WebSocket], prompt_id: str, on_message: Callable[[str, dict], None],
           timeout: Optional[float]) -> dict:
    """Wait for the prompt to finish; return its ``/history`` entry. Messages of this prompt go to ``on_message``.

    With a websocket the end is the ``executing`` message with ``node: null`` (sent after the history is
    written); without one (or once it drops) ``/history/<id>`` is polled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while ws is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        try:
            msg = ws.receive(1.0)
        except (ConnectionError, OSError):
            ws = None
            break
        if msg is None:
            entry = client.history(prompt_id)  # a finished run whose last message was missed
            if entry and _finished(entry):
                return entry
            continue
        if not isinstance(msg, dict):
            continue
        event, data = msg.get("type"), msg.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
            continue
        on_message(event, data)
        if event == "executing" and data.get("node") is None and "prompt_id" in data:
            break
    while True:
        entry = client.history(prompt_id)
        if entry and _finished(entry):
            return entry
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.3)


def _finished(entry: dict) -> bool:
    status = entry.get("status") or {}
    return status.get("completed") is not None and status.get("status_str") in ("success", "error")


# ------------------------------------------------------------------------------------------ results


def output_files(entry: dict, output_dir: Optional[str] = None) -> list[str]:
    """Files named by the run's outputs: ``output/<subfolder>/<name>`` (absolute under ``output_dir`` when
    given) for images/gifs/videos/audio entries, then absolute media paths named in the nodes' texts."""
    files: list[str] = []
    outputs = entry.get("outputs") or {}
    for nid in sorted(outputs, key=_id_key):
        out = outputs[nid] or {}
        for key in FILE_OUTPUT_KEYS:
            for item in out.get(key) or []:
                if not isinstance(item, dict) or not item.get("filename"):
                    continue
                kind = item.get("type") or "output"
                rel = "/".join(p for p in (item.get("subfolder") or "", item["filename"]) if p)
                if kind == "output" and output_dir:
                    path = os.path.join(output_dir, *rel.split("/"))
                else:
                    path = f"{kind}/{rel}"
                if path not in files:
                    files.append(path)
        for text in _texts(out):
            for m in _TEXT_PATH.finditer(text):
                if m.group(1) not in files:
                    files.append(m.group(1))
    return files


def _texts(out: dict) -> list[str]:
    texts = []
    for item in out.get("text") or []:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, (list, tuple)):
            texts.extend(str(x) for x in item if isinstance(x, str))
    return texts


def output_texts(entry: dict, prompt: dict) -> list[str]:
    lines = []
    outputs = entry.get("outputs") or {}
    for nid in sorted(outputs, key=_id_key):
        for text in _texts(outputs[nid] or {}):
            lines.append(f"# {node_label(prompt, nid)}: " + text.replace("\n", "\n#   "))
    return lines


def history_error(entry: dict) -> Optional[dict]:
    for item in (entry.get("status") or {}).get("messages") or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and item[0] == "execution_error":
            return item[1]
    return None


def history_interrupted(entry: dict) -> bool:
    return any(isinstance(m, (list, tuple)) and m and m[0] == "execution_interrupted"
               for m in (entry.get("status") or {}).get("messages") or [])


# ------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m moviedreamer_core.queue",
        description="Queue an API-format MovieDreamer workflow on a running ComfyUI server, with your script, "
        "and print the files it wrote. Exit codes: 0 ok, 2 usage/script error, 3 no server, 4 prompt refused "
        "(bad input, missing model file), 5 the run failed.")
    p.add_argument("workflow", help="API-format workflow JSON (e.g. workflows/moviedreamer_movie_api.json)")
    p.add_argument("--script", help="script file (.yaml/.yml/.json) put into every ScriptEncode node "
                   "(default: the script already in the workflow)")
    p.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"),
                   help="ComfyUI server URL (default: $COMFYUI_URL or http://127.0.0.1:8188)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                   help="override one input, e.g. --set 9.steps=30 --set 10.backend=animatic (repeatable; JSON values)")
    p.add_argument("--project", help="movie project name: sets every project_name input (output/moviedreamer/<NAME>/)")
    p.add_argument("--input-dir", help="the server's input folder, to check the script's reference files locally too")
    p.add_argument("--output-dir", help="the server's output folder, to print absolute paths of output files")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 5)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # argparse exits with 2 on usage errors
    err = sys.stderr
    try:
        prompt = load_workflow(args.workflow)
        if args.script is not None:
            try:
                with open(args.script, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise UsageError(f"cannot read the script {args.script}: {e.strerror or e}")
            inject_script(prompt, text)
        apply_overrides(prompt, args.overrides)
        if args.project is not None:
            apply_project(prompt, args.project)
        if args.input_dir is not None and not os.path.isdir(args.input_dir):
            raise UsageError(f"--input-dir {args.input_dir}: not a folder")
        check_scripts(prompt, args.input_dir)
    except UsageError as e:
        print(f"error: {e}", file=err)
        return EXIT_USAGE

    client = Client(args.server)
    try:
        object_info = fetch_object_info(client, prompt)
    except ServerUnreachable as e:
        print(f"error: {unreachable_message(client.url, e)}", file=err)
        return EXIT_UNREACHABLE
    missing_types = sorted({n["class_type"] for n in prompt.values() if n["class_type"] not in object_info})
    if missing_types:
        print(f"error: the server has no node type {', '.join(missing_types)}: install the custom node pack that "
              "provides it (the test nodes need MOVIEDREAMER_TEST_NODES=1 when ComfyUI starts)", file=err)
        return EXIT_REFUSED
    refused = check_choices(prompt, object_info)
    if refused:
        body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
                "node_errors": refused}
        print(f"error: {format_refusal(body, prompt)}", file=err)
        return EXIT_REFUSED
    client_id = uuid.uuid4().hex
    ws = None
    try:
        ws = WebSocket(websocket_url(client.url, client_id), timeout=10.0)
    except (OSError, ConnectionError, ValueError):
        ws = None  # no websocket: progress comes from polling /history
    try:
        status, body = client.request("/prompt", {"prompt": prompt, "client_id": client_id})
    except ServerUnreachable as e:
        print(f"error: {unreachable_message(client.url, e)}", file=err)
        _close(ws)
        return EXIT_UNREACHABLE
    if status == 400:
        print(f"error: {format_refusal(body, prompt)}", file=err)
        _close(ws)
        return EXIT_REFUSED
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        print(f"error: unexpected answer from {client.url}/prompt (HTTP {status}): {str(body)[:500]}", file=err)
        _close(ws)
        return EXIT_UNREACHABLE if status == 404 else EXIT_FAILED
    prompt_id = body["prompt_id"]
    printer = ProgressPrinter(prompt, err)
    if not args.quiet:
        printer.line(f"queued prompt {prompt_id} on {client.url} ({len(prompt)} nodes"
                     + ("" if ws else "; no websocket, polling /history") + ")")
    errors: list[dict] = []

    def on_message(event: str, data: dict) -> None:
        if event == "execution_error":
            errors.append(data)
        if not args.quiet:
            printer.handle(event, data)

    try:
        entry = follow(client, ws, prompt_id, on_message, args.timeout)
    except TimeoutError:
        print(f"error: prompt {prompt_id} did not finish within {args.timeout:g} s (it is still queued or running "
              "on the server)", file=err)
        return EXIT_FAILED
    except ServerUnreachable as e:
        print(f"error: lost the server while waiting for prompt {prompt_id}: {e}", file=err)
        return EXIT_FAILED
    finally:
        _close(ws)

    failure = history_error(entry) or (errors[0] if errors else None)
    status_str = (entry.get("status") or {}).get("status_str")
    for line in output_texts(entry, prompt):
        print(line)
    for path in output_files(entry, args.output_dir):
        print(path)
    if failure is not None:
        print(f"error: {format_execution_error(failure, prompt)}", file=err)
        return EXIT_FAILED
    if status_str != "success" or history_interrupted(entry):
        print(f"error: prompt {prompt_id} did not complete (" + ("interrupted" if history_interrupted(entry) else
              f"status {status_str}") + ")", file=err)
        return EXIT_FAILED
    if not args.quiet:
        printer.line(f"done: prompt {prompt_id}")
    return EXIT_OK


def fetch_object_info(client: Client, prompt: dict) -> dict:
    """``/object_info/<class>`` of every node type the workflow uses (``{}`` for types the server lacks)."""
    info: dict = {}
    for cls in sorted({n["class_type"] for n in prompt.values()}):
        status, body = client.request(f"/object_info/{urllib.parse.quote(cls, safe='')}")
        if status != 200 or not isinstance(body, dict):
            raise ServerUnreachable(f"the server answers, but not as ComfyUI does (HTTP {status} on /object_info)")
        info.update(body)
    return info


def _close(ws: Optional[WebSocket]) -> None:
    if ws is not None:
        ws.close()


if __name__ == "__main__":
    sys.exit(main())
