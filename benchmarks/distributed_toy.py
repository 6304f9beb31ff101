"""A long toy movie on one ComfyUI instance against a master and two workers (ComfyUI-Distributed), side by side.

    python benchmarks/distributed_toy.py [--shots 40] [--seed 7] [--comfyui ~/ComfyUI]

Needs ComfyUI-Distributed (``$COMFYUI_DISTRIBUTED_PATH`` or ``<ComfyUI>/custom_nodes/ComfyUI-Distributed``). The
movie is a toy film of ``--shots`` shots (the toy cinema's grammar, seed ``--seed``) through the distributed toy
workflow (``workflows/api/moviedreamer_toycinema_distributed_api.json``), animatic shots at 256x256.

* One instance: the workflow with ShotAnimate's results wired straight into the gather node (no collector), at one
  and at two torch threads (``MOVIEDREAMER_THREADS``), each in its own server; the faster one is the reference.
* Distributed: a master that only orchestrates (``master_renders`` off) and two workers with one thread each,
  sharing the output folder, queued through ComfyUI-Distributed's ``/distributed/queue``.

Every instance first makes a short warm-up movie (models loaded, as on a server that has been running), then the
timed one into a fresh project. Times are wall clock from queuing to the master's history entry; per-node times come
from each instance's websocket (``executing`` messages). Printed: both wall times and the speed-up; on the slowest
participant, the time in IdentityDiffusionRender + ShotAnimate and in everything else; and the distribution's own
overhead, the distributed wall time minus the slowest participant's own run (dispatch, results through the
collector, gathering and assembling on the master), against the single-instance time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402

from moviedreamer_core.toycinema import generate_film  # noqa: E402
from moviedreamer_core.toycinema.film_script import script_text  # noqa: E402
from tests.distributed.cluster import Cluster, find_distributed  # noqa: E402
from tests.distributed.toy_prompts import toy_prompt  # noqa: E402
from tests.host.harness import ServerHost, find_host  # noqa: E402

SHARING = ("IdentityDiffusionRender", "ShotAnimate")


def node_seconds(messages: list, prompt: dict, prompt_ids: set | None = None) -> dict:
    """Seconds per node class from ``executing`` messages (a node runs until the next message of its prompt)."""
    events = [m for m in messages if m.get("type") in ("executing", "execution_success", "execution_error")
              and (prompt_ids is None or m.get("data", {}).get("prompt_id") in prompt_ids)]
    out: dict = {}
    for a, b in zip(events, events[1:]):
        node = a["data"].get("node") if a["type"] == "executing" else None
        if node is not None and node in prompt:
            name = prompt[node]["class_type"]
            out[name] = out.get(name, 0.0) + b["received"] - a["received"]
    return out


def timed_single(host: ServerHost, prompt: dict) -> tuple[float, dict]:
    with host.websocket() as ws:
        start = time.time()
        r = host.post_prompt(prompt, client_id=ws.client_id)
        r.raise_for_status()
        pid = r.json()["prompt_id"]
        entry = host.wait_history(pid, timeout=1800)
        wall = time.time() - start
        ws.wait_finished(pid, 60)
        assert entry["status"]["status_str"] == "success", host.log_tail(30)
        return wall, node_seconds(ws.messages, prompt, {pid})


def timed_distributed(cluster: Cluster, prompt: dict) -> tuple[float, list]:
    client = uuid.uuid4().hex
    listeners = [c.websocket(client) for c in cluster.instances]
    try:
        start = time.time()
        pid = cluster.queue(prompt, client_id=client)
        entry = cluster.wait(pid, timeout=1800)
        wall = time.time() - start
        assert entry["status"]["status_str"] == "success", cluster.log_tails(30)
        for i in range(len(cluster.workers)):
            cluster.wait_worker(i, pid, timeout=120)
        time.sleep(0.5)
        per = []
        for ws in listeners:
            ids = {m["data"].get("prompt_id") for m in ws.messages if m.get("type") == "execution_start"}
            runs = [m for m in ws.messages if m.get("type") in ("execution_start", "execution_success")]
            own = runs[-1]["received"] - runs[0]["received"] if len(runs) >= 2 else 0.0
            per.append((own, node_seconds(ws.messages, prompt, ids)))
        return wall, per
    finally:
        for ws in listeners:
            ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=whole_number(1), default=40)
    parser.add_argument("--seed", type=whole_number(0), default=7)
    parser.add_argument("--comfyui", default=None)
    args = parser.parse_args()
    if args.comfyui:
        os.environ["COMFYUI_PATH"] = args.comfyui
    root, reason = find_host()
    if root is None:
        raise SystemExit(reason)
    distributed, reason = find_distributed(root)
    if distributed is None:
        raise SystemExit(reason)
    film = generate_film(args.seed, n_shots=args.shots)
    script = "# benchmark film\n" + script_text(film, "world")
    warm = "# warm-up film\n" + script_text(generate_film(args.seed + 1, n_shots=3), "world")
    print(f"toy movie: {len(film.shots)} shots, {film.n_keyframes} keyframes, "
          f"{sum(s.duration for s in film.shots):.0f} s of video", flush=True)
    with tempfile.TemporaryDirectory(prefix="distributed_bench_") as work:
        single = {}
        for threads in (1, 2):
            host = ServerHost(root, Path(work) / f"single{threads}", env={"MOVIEDREAMER_THREADS": str(threads)})
            try:
                timed_single(host, toy_prompt("warm", script=warm, collector=False))
                single[threads] = timed_single(host, toy_prompt("timed", script=script, collector=False))
            finally:
                host.stop()
            wall, nodes = single[threads]
            work_s = sum(nodes.get(n, 0.0) for n in SHARING)
            print(f"one instance, {threads} thread{'s' if threads > 1 else ''}: {wall:6.1f} s "
                  f"(render {nodes.get(SHARING[0], 0.0):.1f} s + animate {nodes.get(SHARING[1], 0.0):.1f} s, other nodes "
                  f"{sum(nodes.values()) - work_s:.1f} s)", flush=True)
        best = min(single, key=lambda t: single[t][0])
        reference = single[best][0]
        with Cluster(Path(work) / "cluster", workers=2, root=root, distributed_path=distributed, shared_output=True,
                     threads="1") as cluster:
            timed_distributed(cluster, toy_prompt("warm", script=warm, master_renders=False))
            wall, per = timed_distributed(cluster, toy_prompt("timed", script=script, master_renders=False))
    names = ["master", *(f"worker {w}" for w in cluster.worker_ids)]
    for name, (own, nodes) in zip(names, per):
        work_s = sum(nodes.get(n, 0.0) for n in SHARING)
        print(f"distributed, {name:9s}: its run {own:6.1f} s (render {nodes.get(SHARING[0], 0.0):.1f} s + animate "
              f"{nodes.get(SHARING[1], 0.0):.1f} s, other nodes {sum(nodes.values()) - work_s:.1f} s)", flush=True)
    slowest = max(per[1:], key=lambda p: p[0])
    work_s = sum(slowest[1].get(n, 0.0) for n in SHARING)
    overhead = wall - slowest[0]
    print(f"distributed (master orchestrating, 2 workers x 1 thread): {wall:6.1f} s")
    print(f"speed-up over one instance at its best ({best} thread{'s' if best > 1 else ''}, {reference:.1f} s): "
          f"{reference / wall:.2f}x")
    print(f"outside rendering and animation on the slowest worker's path: {wall - work_s:.1f} s "
          f"({(wall - work_s) / reference:.1%} of the single-instance time)")
    print(f"distribution's own overhead (wall time minus the slowest worker's own run): {overhead:.1f} s "
          f"({overhead / reference:.1%} of the single-instance time)")


if __name__ == "__main__":
    main()
