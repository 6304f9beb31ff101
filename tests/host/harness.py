"""Running the real ComfyUI host in tests: finding it, loading the pack in-process, and a loopback server.

No mocks: the in-process host is the host's own ``nodes``/``execution`` modules with the pack loaded by
``nodes.load_custom_node`` exactly as the host does at start-up; the server is ``main.py`` in a child process
on 127.0.0.1. Every folder the host writes to (input, output, temp, user) is a test temporary folder.
"""

from __future__ import annotations

import asyncio
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
from typing import Any, Optional

PACK_DIR = Path(__file__).resolve().parents[2]
TEST_NODES_ENV = "MOVIEDREAMER_TEST_NODES"


def find_host() -> tuple[Optional[Path], str]:
    """The ComfyUI root, or ``None`` and the reason no host was found.

    ``COMFYUI_PATH`` wins; otherwise the pack may sit inside ``<ComfyUI>/custom_nodes/``.
    """
    env = os.environ.get("COMFYUI_PATH")
    if env:
        root = Path(env).expanduser()
        if (root / "main.py").is_file() and (root / "comfy").is_dir():
            return root, ""
        return None, f"COMFYUI_PATH={env} is not a ComfyUI checkout (no main.py and comfy/ there)"
    parent = PACK_DIR.parent
    if parent.name == "custom_nodes" and (parent.parent / "main.py").is_file():
        return parent.parent, ""
    return None, ("no ComfyUI host: set COMFYUI_PATH to a ComfyUI checkout, or place the pack in "
                  "ComfyUI/custom_nodes/ (README, 'Tests')")


# --------------------------------------------------------------------------------------------- in-process


class RecordingServer:
    """Stands in for the server's message sink: records every message the executor sends."""

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


@dataclass
class RunResult:
    """What running one API-format prompt gave."""

    valid: bool
    error: Optional[dict] = None  # validate_prompt's top-level error
    node_errors: dict = field(default_factory=dict)  # node id -> {"errors": [...], ...}
    success: bool = False
    outputs: dict = field(default_factory=dict)  # node id -> ui output
    messages: list = field(default_factory=list)  # (event, data) in order

    def events(self, name: str) -> list:
        return [d for e, d in self.messages if e == name]

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
        return "\n".join(parts)


class InProcessHost:
    """The host's modules in this process with the pack loaded. One per test session."""

    def __init__(self, root: Path, workdir: Path):
        self.root = root
        self.workdir = workdir
        self.dirs = {name: workdir / name for name in ("input", "output", "temp", "user")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        os.environ[TEST_NODES_ENV] = "1"
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        saved_argv = sys.argv
        sys.argv = [sys.argv[0]]  # the host parses its command line on import
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
            import comfy.utils
        finally:
            sys.argv = saved_argv
        self.folder_paths = folder_paths
        self.nodes = nodes
        self.execution = execution
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        before = set(nodes.NODE_CLASS_MAPPINGS)
        if not asyncio.run(nodes.load_custom_node(str(PACK_DIR))):
            raise RuntimeError("the host refused to load the pack (see the log above)")
        self.pack_node_ids = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
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

    def pack_submodule(self, name: str):
        """A module of the pack as the host imported it, e.g. ``pack_submodule("nodes.host")``.

        The host names a folder pack's module after its path (dots escaped as ``_x_``)."""
        import importlib

        return importlib.import_module(f"{str(PACK_DIR).replace('.', '_x_')}.{name}")

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

    def run(self, prompt: dict, extra_data: Optional[dict] = None) -> RunResult:
        """Validate then execute an API-format prompt with the host's own validator and executor."""
        prompt = json.loads(json.dumps(prompt))  # the host mutates prompts while validating
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            return RunResult(valid=False, error=error, node_errors=node_errors)
        self.server.messages = []
        executor = self.execution.PromptExecutor(self.server)  # a fresh executor: nothing cached between runs
        extra = {"client_id": self.server.client_id, **(extra_data or {})}
        executor.execute(prompt, prompt_id, extra, outputs)
        return RunResult(valid=True, node_errors=node_errors, success=executor.success,
                         outputs=executor.history_result.get("outputs", {}), messages=list(self.server.messages))


# ------------------------------------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerHost:
    """``main.py`` on a free loopback port, with only this pack among the custom nodes."""

    def __init__(self, root: Path, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.root = root
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dirs = {name: workdir / name for name in ("input", "output", "temp", "user")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        paths_yaml = workdir / "extra_model_paths.yaml"
        paths_yaml.write_text(f"moviedreamer_tests:\n  base_path: {workdir}\n  custom_nodes: {PACK_DIR.parent}\n")
        self.log_path = workdir / "server.log"
        cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--extra-model-paths-config", str(paths_yaml),
            "--input-directory", str(self.dirs["input"]), "--output-directory", str(self.dirs["output"]),
            "--temp-directory", str(self.dirs["temp"]), "--user-directory", str(self.dirs["user"]),
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR.name, *extra_args,
        ]
        env = {**os.environ, TEST_NODES_ENV: "1"}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(root), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self._wait_ready()

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def _wait_ready(self, timeout: float = 120.0) -> None:
        import requests

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/object_info/ScriptEncode", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def get(self, path: str, **kw):
        import requests

        return requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw):
        import requests

        return requests.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def queue(self, prompt: dict, client_id: str = "tests") -> Any:
        """POST /prompt; returns the response (200 with prompt_id, or 400 with node_errors)."""
        return self.post("/prompt", json={"prompt": prompt, "client_id": client_id})

    def wait_history(self, prompt_id: str, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = self.get(f"/history/{prompt_id}").json()
            if prompt_id in h and h[prompt_id].get("status", {}).get("completed") is not None:
                if h[prompt_id]["status"].get("status_str") in ("success", "error"):
                    return h[prompt_id]
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()
