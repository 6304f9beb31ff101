"""A test cluster for distributed rendering (issue 22): one master ComfyUI and N worker ComfyUI instances on
127.0.0.1, joined by ComfyUI-Distributed (https://github.com/robertvoy/ComfyUI-Distributed, tested with 1.4.4).

Each instance is a ``ServerHost`` of tests/host/harness.py (``main.py --cpu`` on its own port, its own process
group, its own input, temp and user folders). Every instance loads exactly two custom node packs, from a temporary
``custom_nodes/`` folder made for the cluster:

- a copy of ComfyUI-Distributed (found at ``$COMFYUI_DISTRIBUTED_PATH``, else ``$COMFYUI_PATH/custom_nodes/
  ComfyUI-Distributed``). The copy is needed because ComfyUI-Distributed keeps its configuration, ``gpu_config.json``,
  inside its own folder; the cluster writes the copy's: the master at 127.0.0.1, the workers with their ports. The copy
  is named ``ComfyUI-Distributed-cluster`` so that the whitelist never also loads the host's own
  ``custom_nodes/ComfyUI-Distributed`` (the host loads every whitelisted name from every custom_nodes folder);
- a symlink to this pack (``PACK_DIR``), unless the pack already sits in the host's own ``custom_nodes/``.

The last worker (of two or more) loads the same two from another folder, ``installed_elsewhere/custom_nodes/`` (links
to the pack and to the copy): the host names a custom node's modules after its path, so there the pack's classes
have other module names, as on a worker that has the pack installed at another path (``elsewhere``).

Workers run with ``COMFYUI_IS_WORKER=1`` (as ComfyUI-Distributed's own launcher starts them: no signal handlers, no
auto-launch of further workers) and every participant with ``MOVIEDREAMER_THREADS`` (default one torch thread:
bit-identical results need the same thread count everywhere).

Worker ``i`` (0-based, as in ``workers[i]``) has the ComfyUI-Distributed id ``str(i + 1)``. ComfyUI-Distributed numbers
the workers of a run by their place among the workers that answered at queue time: with all of them up, worker ``i``'s
``DistributedSeed`` adds ``i + 1`` to the seed and its ``DistributedValue`` reads key ``str(i + 1)``; with a worker
down, the ones after it move up (test_cluster.py shows it).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from ..host.harness import MODEL_FOLDERS as HOST_MODEL_FOLDERS
from ..host.harness import PACK_DIR, SERVER_TIMEOUT_ENV, GraphError, ServerHost, find_host, free_ports

DISTRIBUTED_ENV = "COMFYUI_DISTRIBUTED_PATH"
DISTRIBUTED_NAME = "ComfyUI-Distributed"  # its folder name in ComfyUI/custom_nodes/
COPY_NAME = "ComfyUI-Distributed-cluster"  # the cluster's copy: a name no host custom_nodes folder holds
THREADS_ENV = "MOVIEDREAMER_THREADS"
#: Model folders every instance reads under ``models_dir``: the pack's, and those the example workflows name
#: (tests/distributed/test_workflows.py puts empty stand-ins there, as the host tests' ``model_files`` fixture does).
MODEL_FOLDERS = (*HOST_MODEL_FOLDERS, "checkpoints", "clip_vision", "diffusion_models", "text_encoders", "vae")
#: Seconds the cluster waits for its instances to answer (they start in parallel and share the cores).
DEFAULT_START_TIMEOUT = 180.0


def copy_ignore(folder: str, names: list[str]) -> set[str]:
    """Not copied: version control, the front-end's npm packages and its JavaScript tests (web/tests)."""
    ignored = {n for n in names if n in (".git", "node_modules")}
    if Path(folder).name == "web" and "tests" in names:
        ignored.add("tests")
    return ignored


def is_distributed_root(path: Path) -> bool:
    return (path / "distributed.py").is_file() and (path / "utils" / "config.py").is_file()


def distributed_version(path: Path) -> str:
    """The ``version`` of ComfyUI-Distributed's pyproject.toml (``"?"`` if none)."""
    import re

    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', (path / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    except OSError:
        return "?"
    return found.group(1) if found else "?"


def running_cluster(tmp_path_factory, folder: str, *, shared_output: bool):
    """A fixture's body (``yield from``): a master and two workers on 127.0.0.1 in a new temporary ``folder``, whose
    output folder is one for all (``shared_output``) or each their own; skipped, naming why, without a host or
    ComfyUI-Distributed."""
    import pytest

    root, reason = find_host()
    if root is None:
        pytest.skip(reason)
    distributed, reason = find_distributed(root)
    if distributed is None:
        pytest.skip(reason)
    with Cluster(tmp_path_factory.mktemp(folder), workers=2, root=root, distributed_path=distributed,
                 shared_output=shared_output) as running:
        yield running


def find_distributed(host_root: Optional[Path] = None) -> tuple[Optional[Path], str]:
    """ComfyUI-Distributed's folder, or ``None`` and the reason it was not found (the distributed tests' skip reason).

    ``$COMFYUI_DISTRIBUTED_PATH`` wins; otherwise ``<host>/custom_nodes/ComfyUI-Distributed`` (the host found as the
    host tests find it, unless ``host_root`` is given)."""
    env = os.environ.get(DISTRIBUTED_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if is_distributed_root(path):
            return path, ""
        return None, f"{DISTRIBUTED_ENV}={env} is not a ComfyUI-Distributed checkout (no distributed.py and utils/config.py there)"
    if host_root is None:
        host_root, reason = find_host()
        if host_root is None:
            return None, reason
    path = Path(host_root) / "custom_nodes" / DISTRIBUTED_NAME
    if is_distributed_root(path):
        return path.resolve(), ""
    return None, (f"no ComfyUI-Distributed: set {DISTRIBUTED_ENV}=/path/to/ComfyUI-Distributed, or clone it into "
                  f"{path} (git clone https://github.com/robertvoy/ComfyUI-Distributed; README, 'Tests')")


def default_config(distributed: Path) -> dict:
    """ComfyUI-Distributed's own ``get_default_config()``, read from its ``utils/config.py`` without importing it (it
    imports the host's server): the function returns one literal."""
    source = (distributed / "utils" / "config.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "get_default_config":
            returned = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
            if returned:
                return ast.literal_eval(returned[0].value)
    raise RuntimeError(f"{distributed}/utils/config.py has no get_default_config() returning a literal")


def collector_job_ids(prompt: dict) -> set[str]:
    """The ``multi_job_id`` of every DistributedCollector / UltimateSDUpscaleDistributed node of a prompt: the master
    gives the master's and the workers' copies of one run the same ids."""
    return {str(node.get("inputs", {}).get("multi_job_id")) for node in prompt.values()
            if isinstance(node, dict) and node.get("class_type") in ("DistributedCollector", "UltimateSDUpscaleDistributed")
            and node.get("inputs", {}).get("multi_job_id")}


def _queue_item_prompt(item: Sequence) -> dict:
    """The prompt of a /history ``prompt`` field or a /queue item: ``[number, prompt_id, prompt, extra_data, ...]``."""
    return item[2] if len(item) > 2 and isinstance(item[2], dict) else {}


class Cluster:
    """A master and ``workers`` worker ComfyUI instances joined by ComfyUI-Distributed (a context manager).

    ``with Cluster(workdir, workers=2) as cluster: entry = cluster.run(prompt)``

    Attributes: ``master`` and ``workers`` (``ServerHost``: ``url``, ``port``, ``dirs``, ``log_tail()``...),
    ``worker_ids`` (``["1", "2", ...]``), ``config_path`` (the copy's gpu_config.json), ``distributed`` (the copy),
    ``output_dir`` (the shared output folder, or ``None``), ``models_dir`` (its ``MODEL_FOLDERS``, read by every
    instance: the pack's renderers and IP-Adapters, and the folders of the example workflows' model files, for
    stand-ins), ``last_queue`` (the last /distributed/queue answer: ``prompt_id``,
    ``worker_count``, ``node_errors``), ``startup_seconds`` (until every instance answered).
    """

    def __init__(self, workdir: Path, workers: int = 2, *, root: Optional[Path] = None,
                 distributed_path: Optional[Path] = None, shared_output: bool = True, worker_timeout_seconds: int = 20,
                 threads: str = "1", settings: Optional[dict] = None, env: Optional[dict[str, str]] = None,
                 timeout: Optional[float] = None):
        """Lay out the cluster's folders and configuration; ``start()`` (or ``with``) starts the instances.

        ``worker_timeout_seconds``: how long the master's collector waits without news from a worker before giving up
        on it (ComfyUI-Distributed's ``settings.worker_timeout_seconds``; its own default is 60). ``settings``: further
        ComfyUI-Distributed settings (``debug``, ``master_delegate_only``, ``websocket_orchestration``...).
        ``threads``: ``MOVIEDREAMER_THREADS`` of every participant. ``env``: added to every instance's environment.
        """
        if root is None:
            root, reason = find_host()
            if root is None:
                raise RuntimeError(reason)
        self.root = Path(root)
        if distributed_path is None:
            distributed_path, reason = find_distributed(self.root)
            if distributed_path is None:
                raise RuntimeError(reason)
        self.source = Path(distributed_path)
        self.version = distributed_version(self.source)
        self.workdir = Path(workdir)
        self.n_workers = int(workers)
        self.worker_ids = [str(i + 1) for i in range(self.n_workers)]
        self.timeout = timeout if timeout is not None else float(os.environ.get(SERVER_TIMEOUT_ENV, DEFAULT_START_TIMEOUT))
        self.threads = str(threads)
        self.extra_env = dict(env or {})

        self.custom_nodes = self.workdir / "custom_nodes"
        self.custom_nodes.mkdir(parents=True, exist_ok=True)
        if (self.root / "custom_nodes" / COPY_NAME).exists():
            raise RuntimeError(f"{self.root / 'custom_nodes' / COPY_NAME} exists: the host would load it as well as "
                               f"the cluster's copy of ComfyUI-Distributed")
        self.distributed = self.custom_nodes / COPY_NAME
        shutil.copytree(self.source, self.distributed, ignore=copy_ignore, symlinks=True)
        for stale in ("gpu_config.json", "gpu_config.json.tmp"):
            (self.distributed / stale).unlink(missing_ok=True)
        self.config_path = self.distributed / "gpu_config.json"
        self.pack_link: Optional[Path] = None
        if PACK_DIR.parent.resolve() != (self.root / "custom_nodes").resolve():
            self.pack_link = self.custom_nodes / PACK_DIR.name
            self.pack_link.symlink_to(PACK_DIR, target_is_directory=True)
        # else the host loads the pack from its own custom_nodes/, under the same whitelisted name
        # The last worker (of two or more) loads both packs from another custom_nodes/ folder: the host imports a
        # custom node under a module name made of its path, so the pack's classes have other module names there,
        # as on a worker installed elsewhere; keyframe and shot signatures must not depend on it.
        self.elsewhere: Optional[Path] = None
        if self.pack_link is not None and self.n_workers >= 2:
            self.elsewhere = self.workdir / "installed_elsewhere" / "custom_nodes"
            self.elsewhere.mkdir(parents=True, exist_ok=True)
            (self.elsewhere / PACK_DIR.name).symlink_to(PACK_DIR, target_is_directory=True)
            (self.elsewhere / COPY_NAME).symlink_to(self.distributed, target_is_directory=True)

        self.ports = free_ports(1 + self.n_workers)
        self.output_dir = self.workdir / "shared_output" if shared_output else None
        self.models_dir = self.workdir / "models"
        config = default_config(self.distributed)
        config["master"] = {**config.get("master", {}), "host": "127.0.0.1"}
        config["workers"] = [{"id": wid, "name": f"worker{wid}", "host": "127.0.0.1", "port": port, "enabled": True,
                              "type": "local", "extra_args": "--cpu"}
                             for wid, port in zip(self.worker_ids, self.ports[1:])]
        config["settings"] = {**config.get("settings", {}), "worker_timeout_seconds": int(worker_timeout_seconds),
                              "auto_launch_workers": False, **(settings or {})}
        self.write_config(config)

        self.master: Optional[ServerHost] = None
        self.workers: list[ServerHost] = []
        self.last_queue: dict = {}
        self.startup_seconds: Optional[float] = None

    # ------------------------------------------------------------------------------------------ set-up

    def write_config(self, config: dict) -> None:
        """Write the copy's gpu_config.json (ComfyUI-Distributed re-reads it when its time stamp changes)."""
        tmp = self.config_path.with_suffix(".json.writing")
        tmp.write_text(json.dumps(config, indent=2), encoding="utf-8")
        os.replace(tmp, self.config_path)

    def config(self) -> dict:
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    def update_settings(self, **settings: Any) -> None:
        """Change ComfyUI-Distributed settings while the cluster runs (e.g. ``worker_timeout_seconds=5``)."""
        config = self.config()
        config["settings"].update(settings)
        self.write_config(config)
        time.sleep(0.01)  # a distinct modification time for the next change

    def _instance(self, name: str, port: int, worker: bool) -> ServerHost:
        env = {THREADS_ENV: self.threads, "PYTHONUNBUFFERED": "1", **self.extra_env}
        if worker:
            env["COMFYUI_IS_WORKER"] = "1"
        whitelist = [PACK_DIR.name, COPY_NAME]
        custom_nodes = self.elsewhere if worker and self.elsewhere is not None and name == f"worker{self.worker_ids[-1]}" \
            else self.custom_nodes
        return ServerHost(self.root, self.workdir / name, port=port, custom_nodes=[custom_nodes],
                          whitelist=whitelist, output_dir=self.output_dir, models_dir=self.models_dir,
                          model_folders=MODEL_FOLDERS, env=env,
                          name=f"{name} (port {port})", timeout=self.timeout, wait=False)

    def start(self) -> "Cluster":
        """Start every instance at once; return when all answer /object_info (or raise with their log tails)."""
        start = time.time()
        try:
            self.master = self._instance("master", self.ports[0], worker=False)
            for wid, port in zip(self.worker_ids, self.ports[1:]):
                self.workers.append(self._instance(f"worker{wid}", port, worker=True))
            for instance in self.instances:
                instance.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.time() - start
        return self

    @property
    def instances(self) -> list[ServerHost]:
        return ([self.master] if self.master is not None else []) + self.workers

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """End every instance (SIGTERM to all at once, then wait; SIGKILL what does not end)."""
        for instance in self.instances:
            instance.terminate()
        for instance in self.instances:
            instance.stop()

    # ------------------------------------------------------------------------------------------ running

    def queue(self, prompt: dict, enabled_worker_ids: Optional[Sequence[str]] = None,
              delegate_master: Optional[bool] = None, client_id: Optional[str] = None) -> str:
        """POST /distributed/queue on the master (ComfyUI-Distributed's own API); returns the master's prompt id.

        ``enabled_worker_ids``: the workers to use (default: all). The master probes each first and leaves out any
        that does not answer; ``last_queue["worker_count"]`` says how many were dispatched. Raises ``GraphError`` with
        the answer's text when the master refuses (400: a bad body; 500: an invalid prompt or a failed dispatch)."""
        ids = list(self.worker_ids if enabled_worker_ids is None else enabled_worker_ids)
        body: dict[str, Any] = {"prompt": prompt, "enabled_worker_ids": [str(i) for i in ids],
                                "client_id": client_id or f"moviedreamer-cluster-{uuid.uuid4().hex[:8]}"}
        if delegate_master is not None:
            body["delegate_master"] = bool(delegate_master)
        r = self.master.post("/distributed/queue", json=body, timeout=120)
        if r.status_code != 200:
            raise GraphError(f"/distributed/queue answered HTTP {r.status_code}: {r.text}\n{self.log_tails(20)}")
        self.last_queue = r.json()
        return self.last_queue["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """The master's /history entry of the prompt once it finished (``status``, ``outputs``, ``prompt``)."""
        try:
            return self.master.wait_history(prompt_id, timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.log_tails(30)}") from None

    def run(self, prompt: dict, enabled_worker_ids: Optional[Sequence[str]] = None, timeout: float = 120.0,
            delegate_master: Optional[bool] = None) -> dict:
        """``queue`` then ``wait``; raises ``GraphError`` (with the error message and log tails) unless it succeeded."""
        entry = self.wait(self.queue(prompt, enabled_worker_ids, delegate_master), timeout)
        if entry["status"].get("status_str") != "success":
            raise GraphError(f"the master's run failed: {json.dumps(entry['status'].get('messages'))[-3000:]}\n"
                             f"{self.log_tails(30)}")
        return entry

    def master_prompt(self, prompt_id: str) -> dict:
        """The prompt the master runs for ``prompt_id`` (ComfyUI-Distributed's ids filled in), from its history or
        its queue."""
        entry = self.master.get(f"/history/{prompt_id}").json().get(prompt_id)
        if entry:
            return _queue_item_prompt(entry["prompt"])
        queue = self.master.get("/queue").json()
        for item in queue.get("queue_running", []) + queue.get("queue_pending", []):
            if len(item) > 1 and item[1] == prompt_id:
                return _queue_item_prompt(item)
        raise KeyError(f"the master knows no prompt {prompt_id}")

    def worker_history(self, i: int, prompt_id: Optional[str] = None) -> dict:
        """Worker ``i``'s /history (prompt id -> entry: ``prompt``, ``outputs``, ``status``): what it executed.
        With ``prompt_id`` (the master's), only the entries of that distributed run."""
        history = self.workers[i].get("/history").json()
        if prompt_id is None:
            return history
        job_ids = collector_job_ids(self.master_prompt(prompt_id))
        return {pid: e for pid, e in history.items() if job_ids & collector_job_ids(_queue_item_prompt(e["prompt"]))}

    def wait_worker(self, i: int, prompt_id: str, timeout: float = 60.0) -> dict:
        """Worker ``i``'s finished history entry of the master's run ``prompt_id`` (it may finish after the master:
        its nodes after the collector run once its images are sent)."""
        deadline = time.time() + timeout
        while True:
            done = [e for e in self.worker_history(i, prompt_id).values()
                    if e.get("status", {}).get("status_str") in ("success", "error")]
            if done:
                return done[0]
            if time.time() > deadline:
                raise TimeoutError(f"worker {self.worker_ids[i]} has no finished run of {prompt_id} after "
                                   f"{timeout:.0f} s\n{self.log_tails(30)}")
            if not self.workers[i].running():
                raise RuntimeError(f"worker {self.worker_ids[i]} is not running\n{self.workers[i].log_tail()}")
            time.sleep(0.3)

    # ------------------------------------------------------------------------------------------ failures

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i``'s process group (a crash: nothing is cleaned up, its port stops answering)."""
        self.workers[i].kill()

    def restart_worker(self, i: int, wait: bool = True) -> None:
        """Start worker ``i`` again: same port, same folders, same id in the master's configuration."""
        self.workers[i].restart(wait=wait)

    def log_tails(self, n: int = 40) -> str:
        """The last ``n`` lines of every instance's log, each under its name (for assertion messages): a running
        instance's from its live buffer (``ServerHost.live_log``), a stopped one's from its log file."""
        return "\n".join(f"----- {inst.name}: {inst.log_path}\n{inst.live_log(n) if inst.running() else inst.log_tail(n)}"
                         for inst in self.instances)

