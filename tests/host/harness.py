"""Running the real ComfyUI host in tests: finding it, loading the pack in-process, and a loopback server.

No mocks: the in-process host is the host's own ``nodes``/``execution`` modules with the pack loaded by
``nodes.load_custom_node`` exactly as the host does at start-up; the server is ``main.py`` in a child process
on 127.0.0.1. Every folder the host writes to (input, output, temp, user) is a test temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

PACK_DIR = Path(__file__).resolve().parents[2]  # the repository root is the pack folder
TEST_NODES_ENV = "MOVIEDREAMER_TEST_NODES"  # registers the test-only nodes of tests/host/tiny_nodes.py
NO_HOST_ENV = "MOVIEDREAMER_NO_HOST"  # "1": behave as if there were no host (host tests skip)
SERVER_TIMEOUT_ENV = "MOVIEDREAMER_SERVER_TIMEOUT"  # seconds the loopback server may take to start (default 60)
MODEL_FOLDERS = ("moviedreamer", "ipadapter")  # a ServerHost reads these under its models_dir (besides the host's own)


def is_comfyui_root(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir()


def find_host(ignore_no_host_flag: bool = False) -> tuple[Optional[Path], str]:
    """The ComfyUI root, or ``None`` and the reason no host was found (printed in the test summary).

    ``MOVIEDREAMER_NO_HOST=1`` forces "no host" (unless ``ignore_no_host_flag``: CI, which must have one); then
    ``COMFYUI_PATH`` wins; otherwise the pack may sit inside ``<ComfyUI>/custom_nodes/`` (found by walking up from
    the pack folder).
    """
    if os.environ.get(NO_HOST_ENV) == "1" and not ignore_no_host_flag:
        return None, f"no ComfyUI host: {NO_HOST_ENV}=1 is set"
    env = os.environ.get("COMFYUI_PATH")
    if env:
        root = Path(env).expanduser().resolve()
        if is_comfyui_root(root):
            return root, ""
        return None, f"COMFYUI_PATH={env} is not a ComfyUI checkout (no main.py and comfy/ there)"
    for parent in PACK_DIR.parents:
        if parent.name == "custom_nodes" and is_comfyui_root(parent.parent):
            return parent.parent, ""
    return None, ("no ComfyUI host: set COMFYUI_PATH=/path/to/ComfyUI (a checkout of Comfy-Org/ComfyUI), or place "
                  "the pack in ComfyUI/custom_nodes/ (README, 'Tests')")


def pack_module_name() -> str:
    """The name the host gives the pack's package in ``sys.modules`` (its path, dots escaped as ``_x_``)."""
    return str(PACK_DIR).replace(".", "_x_")


#: The toy cinema's API-format workflow.
TOY_WORKFLOW = PACK_DIR / "workflows" / "api" / "moviedreamer_toycinema_api.json"


def toy_prompt(project: str, script: Optional[str] = None) -> dict:
    """The toy workflow as a prompt, every node that keeps a movie project writing to ``project`` (and ScriptEncode
    given ``script``, when one is given)."""
    prompt = json.loads(TOY_WORKFLOW.read_text())
    if script is not None:
        prompt["2"]["inputs"]["script"] = script
    for node in prompt.values():
        if "project_name" in node["inputs"]:
            node["inputs"]["project_name"] = project
    return prompt


def require_nodes(available, *node_ids: str) -> None:
    """Skip the calling test, naming what is missing, unless every node id is registered (``available``: the
    in-process ``host.nodes.NODE_CLASS_MAPPINGS`` or the server's ``/object_info``)."""
    missing = [n for n in node_ids if n not in available]
    if missing:
        import pytest

        pytest.skip(f"node(s) not registered by the pack: {', '.join(missing)}")


# --------------------------------------------------------------------------------------------- in-process


class RecordingServer:
    """Stands in for the server's message sink (``PromptServer``): records every message the executor sends."""

    def __init__(self):
        self.client_id = "moviedreamer-tests"
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list[tuple[str, Any]] = []
        self.on_progress = None  # optional callable(progress_message), e.g. to press "cancel" mid-run

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


class GraphError(AssertionError):
    """A prompt was refused by validation or failed while executing; the message holds the host's texts."""


@dataclass
class RunResult:
    """What running one API-format prompt gave.

    ``valid`` is validation's verdict (``error``/``node_errors`` explain a refusal); ``success`` is execution's
    (``execution_error``/``execution_interrupted`` messages explain a failure).
    """

    valid: bool
    error: Optional[dict] = None  # validate_prompt's top-level error
    node_errors: dict = field(default_factory=dict)  # node id -> {"errors": [...], "class_type": ...}
    success: bool = False
    outputs: dict = field(default_factory=dict)  # node id -> ui output (what /history shows)
    messages: list = field(default_factory=list)  # (event, data) in order
    prompt_id: str = ""

    @property
    def ok(self) -> bool:
        return self.valid and self.success

    def events(self, name: str) -> list:
        return [d for e, d in self.messages if e == name]

    def input_errors(self, node_id: str) -> dict[str, str]:
        """Validation errors of one node by input name: ``{"script": "shots[0].duration: ..."}``.

        Errors that name no input (e.g. a failing VALIDATE_INPUTS without an input) are under ``""``."""
        found: dict[str, str] = {}
        for err in self.node_errors.get(str(node_id), {}).get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name") or ""
            text = f"{err.get('message')}: {err.get('details')}"
            found[name] = f"{found[name]}\n{text}" if name in found else text
        return found

    @property
    def execution_error(self) -> Optional[dict]:
        """The ``execution_error`` message (node_id, node_type, exception_type, exception_message, traceback)."""
        errors = self.events("execution_error")
        return errors[0] if errors else None

    @property
    def interrupted(self) -> bool:
        return bool(self.events("execution_interrupted"))

    def error_text(self) -> str:
        """All validation and execution error texts, joined (for assertions on messages)."""
        parts = []
        if self.error:
            parts.append(json.dumps(self.error))
        for node in self.node_errors.values():
            for err in node.get("errors", []):
                parts.append(f"{err.get('message')}: {err.get('details')}")
        for data in self.events("execution_error"):
            parts.append(f"{data.get('exception_type')}: {data.get('exception_message')}")
        if self.interrupted:
            parts.append("execution interrupted")
        return "\n".join(parts)

    def raise_for_error(self) -> "RunResult":
        """Raise ``GraphError`` with the host's texts (and the traceback) unless the prompt ran to success."""
        if not self.ok:
            tb = "".join((self.execution_error or {}).get("traceback") or [])
            raise GraphError(self.error_text() + (f"\n{tb}" if tb else ""))
        return self


class InProcessHost:
    """The host's modules in this process with the pack loaded as ``main.py`` loads it. One per test session.

    Attributes: ``nodes``, ``execution``, ``folder_paths`` (the host's modules), ``dirs`` (its input, output,
    temp and user folders, all under ``workdir``), ``pack_node_ids`` (node ids the pack registered),
    ``server`` (the ``RecordingServer`` the executor reports to).
    """

    def __init__(self, root: Path, workdir: Path):
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.dirs = {name: self.workdir / name for name in ("input", "output", "temp", "user")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        os.environ[TEST_NODES_ENV] = "1"
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        sys.path.insert(0, str(self.root))
        saved_argv = sys.argv
        # comfy.cli_args parses the command line only after main.py calls comfy.options.enable_args_parsing();
        # without it the defaults apply. pytest's argv is hidden anyway in case something enabled parsing.
        sys.argv = [sys.argv[0]]
        try:
            import comfy.cli_args

            comfy.cli_args.args.cpu = True
            import folder_paths

            folder_paths.set_input_directory(str(self.dirs["input"]))
            folder_paths.set_output_directory(str(self.dirs["output"]))
            folder_paths.set_temp_directory(str(self.dirs["temp"]))
            folder_paths.set_user_directory(str(self.dirs["user"]))
            import utils.extra_config  # noqa: F401  (before `nodes`, which puts comfy/ first on sys.path)
            import nodes
            import execution
            import comfy.model_management
            import comfy.utils
        finally:
            sys.argv = saved_argv
        assert comfy.model_management.cpu_state == comfy.model_management.CPUState.CPU, \
            "the host was imported before the harness could select the CPU"
        self.folder_paths = folder_paths
        self.nodes = nodes
        self.execution = execution
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        before = set(nodes.NODE_CLASS_MAPPINGS)
        # as main.py does: built-in ids are passed as `ignore`, so a pack node may never replace one
        if not asyncio.run(nodes.load_custom_node(str(PACK_DIR), ignore=before, module_parent="custom_nodes")):
            raise RuntimeError("the host refused to load the pack (see the log above)")
        self.pack_node_ids = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
        # Files the pack writes (trained renderers) go to the work folder, never into the host checkout's models/.
        written = self.workdir / "models" / "moviedreamer"
        written.mkdir(parents=True, exist_ok=True)
        folder_paths.folder_names_and_paths["moviedreamer"][0].insert(0, str(written))
        folder_paths.filename_list_cache.clear()
        self.server = RecordingServer()
        self._install_progress_hook(comfy.utils)

    def _install_progress_hook(self, comfy_utils) -> None:
        """What main.py's ``hijack_progress`` does: honour interrupts, record progress messages."""
        import comfy.model_management
        from comfy_execution.progress import get_progress_state
        from comfy_execution.utils import get_executing_context

        server = self.server

        def hook(value, total, preview_image, prompt_id=None, node_id=None):
            ctx = get_executing_context()
            if node_id is None and ctx is not None:
                node_id = ctx.node_id
            if prompt_id is None and ctx is not None:
                prompt_id = ctx.prompt_id
            comfy.model_management.throw_exception_if_processing_interrupted()
            get_progress_state().update_progress(node_id, value, total, preview_image)
            message = {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id,
                       "has_preview": preview_image is not None}
            server.send_sync("progress", message)
            if server.on_progress is not None:
                server.on_progress(message)

        comfy_utils.set_progress_bar_global_hook(hook)

    @property
    def pack_module(self):
        """The pack's root package as the host imported it."""
        return sys.modules[pack_module_name()]

    def pack_submodule(self, name: str):
        """A module of the pack as the host imported it, e.g. ``pack_submodule("nodes.host")``."""
        import importlib

        return importlib.import_module(f"{pack_module_name()}.{name}")

    @contextlib.contextmanager
    def model_folder(self, kind: str, folder):
        """``folder`` listed among the host's ``kind`` model folders (``diffusion_models``, ``loras``, ...) while the
        block runs, as an extra model path would add it, and taken out again after (a module fixture's files)."""
        self.folder_paths.add_model_folder_path(kind, str(folder))
        self.folder_paths.filename_list_cache.clear()
        try:
            yield
        finally:
            self.folder_paths.folder_names_and_paths[kind][0].remove(str(folder))
            self.folder_paths.filename_list_cache.clear()

    def new_executor(self, cache_type=False):
        """A ``PromptExecutor`` reporting to ``self.server``; reuse one across ``run(..., executor=)`` calls to test
        the host's caching (``cache_type``: ``execution.CacheType.CLASSIC``/``LRU``/``DEPENDENCY_AWARE``)."""
        return self.execution.PromptExecutor(self.server, cache_type=cache_type)

    def run(self, prompt: dict, extra_data: Optional[dict] = None, executor=None) -> RunResult:
        """Validate then execute an API-format prompt with the host's own validator and executor.

        A fresh executor per call unless ``executor`` is given, so nothing is cached between runs."""
        prompt = json.loads(json.dumps(prompt))  # the host mutates prompts while validating
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            return RunResult(valid=False, error=error, node_errors=node_errors, prompt_id=prompt_id)
        self.server.messages = []
        executor = executor or self.new_executor()
        extra = {"client_id": self.server.client_id, **(extra_data or {})}
        executor.execute(prompt, prompt_id, extra, outputs)
        messages = list(self.server.messages)
        failed = any(e in ("execution_error", "execution_interrupted") for e, _ in messages)
        return RunResult(valid=True, node_errors=node_errors, success=executor.success and not failed,
                         outputs=executor.history_result.get("outputs", {}), messages=messages, prompt_id=prompt_id)

    def run_graph(self, prompt: dict, extra_data: Optional[dict] = None) -> tuple[RunResult, list]:
        """``run`` returning ``(result, messages)``; ``result.raise_for_error()`` turns a failure into an exception."""
        result = self.run(prompt, extra_data)
        return result, result.messages

    def run_and_cancel(self, prompt: dict, node: str, at_progress: int) -> RunResult:
        """Run a prompt and press Cancel (the host's interrupt) when ``node`` reports progress ``at_progress``."""
        import comfy.model_management as mm

        def press_cancel(message):
            if message["node"] == node and message["value"] == at_progress:
                mm.interrupt_current_processing(True)

        self.server.on_progress = press_cancel
        try:
            return self.run(prompt)
        finally:
            self.server.on_progress = None
            mm.interrupt_current_processing(False)


# ------------------------------------------------------------------------------------------------ server


#: ``8261-8270``: the test servers take their ports from this range only (machines where only some ports may be
#: used); unset, any free port.
PORTS_ENV = "MOVIEDREAMER_TEST_PORTS"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all sockets held open together, so none is handed out twice), from
    ``$MOVIEDREAMER_TEST_PORTS`` when it is set."""
    wanted = os.environ.get(PORTS_ENV, "").strip()
    candidates = [0] * n
    if wanted:
        low, _, high = wanted.partition("-")
        candidates = list(range(int(low), int(high or low) + 1))
    sockets = []
    try:
        for port in candidates:
            if len(sockets) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        if len(sockets) < n:
            raise RuntimeError(f"{n} free ports wanted, {len(sockets)} free in {PORTS_ENV}={wanted}")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class WebSocketListener:
    """A client of the server's ``/ws?clientId=...`` that records every message in a background thread.

    Text messages are kept as parsed JSON (``{"type": ..., "data": ...}``); binary ones (previews) as
    ``{"type": "binary", "event": <int>, "size": <bytes>}``. Uses aiohttp (a host dependency)."""

    def __init__(self, ws_url: str, client_id: str, timeout: float = 10.0):
        import threading

        self.client_id = client_id
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._closing: Optional[asyncio.Event] = None
        self._connected = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(ws_url),), daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout) or self._error is not None:
            self.close()
            raise RuntimeError(f"websocket {ws_url} did not connect: {self._error!r}")

    async def _main(self, ws_url: str) -> None:
        import aiohttp

        self._closing = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(ws_url, heartbeat=30) as ws:
                    self._connected.set()
                    reader = asyncio.ensure_future(self._read(ws))
                    closing = asyncio.ensure_future(self._closing.wait())
                    await asyncio.wait([reader, closing], return_when=asyncio.FIRST_COMPLETED)
                    reader.cancel()
                    closing.cancel()
        except BaseException as e:  # noqa: BLE001  (reported by the constructor or wait_for)
            self._error = e
            self._connected.set()

    async def _read(self, ws) -> None:
        import aiohttp

        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                item = json.loads(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                item = {"type": "binary", "event": int.from_bytes(msg.data[:4], "big"), "size": len(msg.data)}
            else:
                continue
            item["received"] = time.time()  # when it arrived (benchmarks time each node by it)
            with self._cond:
                self.messages.append(item)
                self._cond.notify_all()

    def events(self, name: str, prompt_id: Optional[str] = None) -> list[dict]:
        """The ``data`` of every message of one type (optionally of one prompt)."""
        with self._cond:
            return [m.get("data", {}) for m in self.messages if m.get("type") == name
                    and (prompt_id is None or m.get("data", {}).get("prompt_id") == prompt_id)]

    def wait_for(self, predicate, timeout: float = 60.0) -> dict:
        """Block until a recorded message satisfies ``predicate(message)``; return it."""
        deadline = time.time() + timeout
        seen = 0
        with self._cond:
            while True:
                for m in self.messages[seen:]:
                    if predicate(m):
                        return m
                seen = len(self.messages)
                left = deadline - time.time()
                if left <= 0 or not self._thread.is_alive():
                    raise TimeoutError(f"no matching websocket message in {timeout:.0f} s; got "
                                       f"{[m.get('type') for m in self.messages]} (error: {self._error!r})")
                self._cond.wait(min(left, 0.5))

    def wait_finished(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """Wait for the prompt's ``execution_success``, ``execution_error`` or ``execution_interrupted``."""
        final = ("execution_success", "execution_error", "execution_interrupted")
        return self.wait_for(lambda m: m.get("type") in final and m.get("data", {}).get("prompt_id") == prompt_id,
                             timeout)

    def close(self) -> None:
        if self._closing is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> "WebSocketListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ServerHost:
    """``main.py`` on a free loopback port, with only this pack among the custom nodes (and its test-only nodes).

    Attributes: ``url``, ``port``, ``dirs`` (input, output, temp, user: under ``workdir`` unless ``output_dir`` names
    another output folder), ``models_dir`` (its ``model_folders``, by default ``moviedreamer`` and ``ipadapter``, are
    read there besides the host's own), ``log_path``, ``startup_seconds`` (of the last start).

    The defaults are the single server of the host tests. The distributed test cluster (tests/distributed/cluster.py)
    starts several with its own options: ``custom_nodes`` (folders searched for custom nodes, instead of the pack's
    parent folder), ``whitelist`` (the folder names loaded from them, instead of only the pack's), ``output_dir`` (one
    output folder shared by several servers), ``models_dir``, ``model_folders`` (more model folders read under it, e.g.
    ``checkpoints`` for stand-in files), ``env`` (added to the environment), ``port`` (instead of a free one) and
    ``wait=False`` (return at once; ``wait_ready()`` later: start several in parallel). Each server is
    its own process group: ``stop()`` (SIGTERM, then SIGKILL) and ``kill()`` (SIGKILL) end all of it, ``restart()``
    starts it again on the same port with the same folders.
    """

    def __init__(self, root: Path, workdir: Path, extra_args: tuple[str, ...] = (), timeout: Optional[float] = None, *,
                 port: Optional[int] = None, custom_nodes: Optional[Sequence[Path]] = None,
                 whitelist: Optional[Sequence[str]] = None, output_dir: Optional[Path] = None,
                 models_dir: Optional[Path] = None, model_folders: Sequence[str] = MODEL_FOLDERS,
                 env: Optional[dict[str, str]] = None, name: str = "ComfyUI", wait: bool = True):
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pack_name = PACK_DIR.name  # the host's module name for the pack, also its /extensions/<name>/ prefix
        self.dirs = {name: self.workdir / name for name in ("input", "output", "temp", "user")}
        if output_dir is not None:
            self.dirs["output"] = Path(output_dir)
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.models_dir = Path(models_dir) if models_dir is not None else self.workdir / "models"
        paths_yaml = self.workdir / "extra_model_paths.yaml"
        # models/moviedreamer and models/ipadapter (and any other model_folders) under models_dir, for tests that put
        # renderer files (or stand-ins) there
        entry = {"base_path": str(self.models_dir.parent)}
        for folder in model_folders:
            entry[folder] = f"{self.models_dir.name}/{folder}"
            (self.models_dir / folder).mkdir(parents=True, exist_ok=True)
        if custom_nodes is not None:
            # absolute, so that base_path does not apply; several folders are one value, a line each
            entry["custom_nodes"] = "\n".join(str(Path(d).resolve()) for d in custom_nodes)
        elif PACK_DIR.parent.resolve() != (self.root / "custom_nodes").resolve():
            entry["custom_nodes"] = str(PACK_DIR.parent)  # else the host finds the pack in its own custom_nodes
        paths_yaml.write_text("moviedreamer_tests:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in entry.items()))
        self.whitelist = list(whitelist) if whitelist is not None else [self.pack_name]
        self.log_path = self.workdir / "server.log"
        self.cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--extra-model-paths-config", str(paths_yaml),
            "--input-directory", str(self.dirs["input"]), "--output-directory", str(self.dirs["output"]),
            "--temp-directory", str(self.dirs["temp"]), "--user-directory", str(self.dirs["user"]),
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", *self.whitelist, *extra_args,
        ]
        self.env = {**os.environ, TEST_NODES_ENV: "1", **(env or {})}
        self.timeout = timeout if timeout is not None else float(os.environ.get(SERVER_TIMEOUT_ENV, "60"))
        self.proc: Optional[subprocess.Popen] = None
        self._terminated: Optional[subprocess.Popen] = None  # the process already sent SIGTERM
        self._log = None
        import atexit

        atexit.register(self.stop)  # even if the session is torn down abruptly
        self.start()
        if wait:
            self.wait_ready()

    def start(self) -> None:
        """Start ``main.py`` (its output appended to ``log_path``); returns at once (``wait_ready()`` waits)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        if self._log is not None and not self._log.closed:
            self._log.close()
        self._log = open(self.log_path, "ab")
        self._log.write(f"===== starting {self.name} on port {self.port} at {time.strftime('%H:%M:%S')} =====\n".encode())
        self._log.flush()
        self._started = time.time()
        self.proc = subprocess.Popen(self.cmd, cwd=str(self.root), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)  # its own process group: stop() ends all

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def live_log(self, n: int = 60) -> str:
        """The last ``n`` lines the running server wrote, from its own log buffer (``GET /internal/logs/raw``, the last
        300 writes). Up to date where ``log_tail`` may not be: the host's stdout wrapper holds ``print()`` output
        (ComfyUI-Distributed's messages) in a buffer until it fills, when stdout is a file. Falls back to
        ``log_tail`` when the server does not answer."""
        try:
            entries = self.get("/internal/logs/raw", timeout=5).json()["entries"]
        except Exception:  # noqa: BLE001  (not running, or an older host without the route)
            return self.log_tail(n)
        return "\n".join("".join(e.get("m", "") for e in entries).splitlines()[-n:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Until ``/object_info`` answers: the host opens its port only after loading every node."""
        import requests

        timeout = self.timeout if timeout is None else timeout
        start = self._started
        while time.time() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/object_info", timeout=5).status_code == 200:
                    self.startup_seconds = time.time() - start
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s (set {SERVER_TIMEOUT_ENV} to wait "
                           f"longer):\n{self.log_tail()}")

    def get(self, path: str, **kw):
        import requests

        return requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw):
        import requests

        return requests.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post_prompt(self, prompt: dict, client_id: str = "tests") -> Any:
        """POST /prompt; returns the response (200 with ``prompt_id``, or 400 with ``error`` and ``node_errors``)."""
        return self.post("/prompt", json={"prompt": prompt, "client_id": client_id})

    queue = post_prompt

    def interrupt(self):
        """POST /interrupt (the UI's Cancel button)."""
        return self.post("/interrupt", json={})

    def websocket(self, client_id: Optional[str] = None) -> WebSocketListener:
        """A connected ``WebSocketListener`` on ``/ws?clientId=<client_id>`` (use as a context manager)."""
        client_id = client_id or uuid.uuid4().hex
        return WebSocketListener(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}", client_id)

    def wait_history(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Poll ``/history/<prompt_id>`` until the prompt finished; returns its entry (``status``, ``outputs``)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = self.get(f"/history/{prompt_id}").json()
            if prompt_id in h and h[prompt_id].get("status", {}).get("completed") is not None:
                if h[prompt_id]["status"].get("status_str") in ("success", "error"):
                    return h[prompt_id]
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300.0) -> tuple[dict, list[dict]]:
        """Queue a prompt with a websocket listening; return ``(history entry, websocket messages)``.

        Raises ``GraphError`` with the server's ``node_errors`` if the prompt is refused (HTTP 400)."""
        with self.websocket() as ws:
            r = self.post_prompt(prompt, client_id=ws.client_id)
            if r.status_code != 200:
                raise GraphError(f"HTTP {r.status_code}: {r.text}")
            prompt_id = r.json()["prompt_id"]
            ws.wait_finished(prompt_id, timeout)
            entry = self.wait_history(prompt_id, timeout)
            return entry, list(ws.messages)

    def terminate(self) -> None:
        """SIGTERM to the server's process group, once, without waiting (``stop()`` waits): stop several at once."""
        if self.running() and self._terminated is not self.proc:
            self._terminated = self.proc
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL to the server's process group (a crash: no clean-up runs); waits until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def restart(self, wait: bool = True) -> None:
        """Start again on the same port with the same folders (after ``kill()``, ``stop()`` or a crash)."""
        if self.running():
            self.stop()
        self.start()
        if wait:
            self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate()
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        if self._log is not None and not self._log.closed:
            self._log.close()
