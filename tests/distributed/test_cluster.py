"""The test cluster itself (tests/distributed/cluster.py): a prompt queued through ComfyUI-Distributed's own
``POST /distributed/queue`` runs on the master and on both workers, and the master's DistributedCollector returns the
master's rows followed by each worker's, in the workers' order. Host-only nodes, no model: seconds after start-up.

Each participant makes a batch of plain images whose size and colour say who made it: ``DistributedSeed`` (seed 1)
gives the batch size (master 1, worker ``i`` 1 + (i + 1)), ``DistributedValue`` the colour (master red, worker 1
green, worker 2 blue).
"""

from __future__ import annotations

import json
import time

import numpy as np
from PIL import Image

COLOURS = {"master": 0xFF0000, "1": 0x00FF00, "2": 0x0000FF}


def who_made_it_prompt(prefix: str) -> dict:
    """DistributedSeed -> batch size, DistributedValue -> colour, EmptyImage -> DistributedCollector -> SaveImage."""
    return {
        "1": {"class_type": "DistributedSeed", "inputs": {"seed": 1}},
        "2": {"class_type": "DistributedValue", "inputs": {
            "default_value": str(COLOURS["master"]),
            "worker_values": json.dumps({"_type": "INT", "1": str(COLOURS["1"]), "2": str(COLOURS["2"])})}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": ["1", 0], "color": ["2", 0]}},
        "4": {"class_type": "DistributedCollector", "inputs": {"images": ["3", 0], "load_balance": False}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": prefix}},
    }


def expected_rows(worker_ids) -> list[int]:
    """The collected batch's colours: the master's row, then worker ``i``'s ``i + 2`` rows, in the given order."""
    rows = [COLOURS["master"]]
    for wid in worker_ids:
        rows += [COLOURS[wid]] * (int(wid) + 1)
    return rows


def saved_colours(cluster, entry: dict, node: str = "5") -> list[int]:
    """The colour of each image the master's SaveImage wrote (one colour per image, or the test fails)."""
    colours = []
    for image in entry["outputs"][node]["images"]:
        pixels = np.asarray(Image.open(cluster.output_dir / image["subfolder"] / image["filename"]).convert("RGB"))
        assert (pixels == pixels[0, 0]).all(), f"{image['filename']} is not one colour"
        r, g, b = (int(v) for v in pixels[0, 0])
        colours.append(r << 16 | g << 8 | b)
    return colours


def test_a_distributed_prompt_runs_on_the_master_and_on_both_workers(cluster):
    config = cluster.master.get("/distributed/config").json()
    assert [(w["id"], w["port"]) for w in config["workers"]] == [(w, s.port) for w, s in zip(cluster.worker_ids, cluster.workers)]

    entry = cluster.run(who_made_it_prompt("cluster_smoke"))
    prompt_id = cluster.last_queue["prompt_id"]
    assert cluster.last_queue["worker_count"] == 2, cluster.last_queue
    assert saved_colours(cluster, entry) == expected_rows(["1", "2"]), cluster.log_tails(20)

    for i, wid in enumerate(cluster.worker_ids):
        runs = cluster.worker_history(i, prompt_id)
        assert len(runs) <= 1, runs
        ran = cluster.wait_worker(i, prompt_id)
        assert ran["status"]["status_str"] == "success", ran["status"]
        prompt = ran["prompt"][2]
        assert prompt["4"]["inputs"]["is_worker"] is True and prompt["4"]["inputs"]["worker_id"] == wid, prompt["4"]
        assert "5" not in prompt, "the worker ran the master's SaveImage"
        previews = [images for out in ran["outputs"].values() for images in out.get("images", [])]
        assert len(previews) == int(wid) + 1, ran["outputs"]  # its own rows, previewed after its collector


# ComfyUI-Distributed's behaviour when a worker fails, which distributed rendering has to live with (1.4.4): the master
# leaves out a worker that does not answer at queue time, and gives up on one that goes silent mid-job after
# worker_timeout_seconds; both times the run *succeeds* with fewer rows, saying so only in the master's log.


def test_a_worker_down_at_queue_time_is_left_out_and_the_next_worker_takes_its_index(cluster):
    """Worker 1 is dead: the master probes it, leaves it out (``worker_count`` 1) and worker 2 runs as the first
    worker (``worker_0``): it gets worker 1's seed offset and worker 1's DistributedValue, so the batch reads
    master, then two green rows. Restarted on its port, worker 1 takes part again."""
    cluster.kill_worker(0)
    try:
        entry = cluster.run(who_made_it_prompt("cluster_worker1_down"))
        assert cluster.last_queue["worker_count"] == 1, cluster.last_queue
        assert saved_colours(cluster, entry) == [COLOURS["master"]] + [COLOURS["1"]] * 2
        ran = cluster.wait_worker(1, cluster.last_queue["prompt_id"])
        assert ran["prompt"][2]["1"]["inputs"]["worker_id"] == "worker_0", ran["prompt"][2]["1"]
    finally:
        cluster.restart_worker(0)
    entry = cluster.run(who_made_it_prompt("cluster_worker1_back"))
    assert cluster.last_queue["worker_count"] == 2 and saved_colours(cluster, entry) == expected_rows(["1", "2"])


def test_a_worker_killed_mid_job_leaves_the_master_a_partial_batch_and_a_success(cluster):
    """Worker 1 gets a slow job (a 2048x2048 blur) and is killed while it runs: after ``worker_timeout_seconds`` of
    silence the master probes it, finds it gone and finishes with the rows it has: its own and worker 2's."""
    prompt = who_made_it_prompt("cluster_worker1_killed")
    prompt["6"] = {"class_type": "DistributedValue", "inputs": {"default_value": "32",
                                                                  "worker_values": json.dumps({"_type": "INT", "1": "2048"})}}
    prompt["3"]["inputs"].update(width=["6", 0], height=["6", 0])
    prompt["7"] = {"class_type": "ImageBlur", "inputs": {"image": ["3", 0], "blur_radius": 15, "sigma": 5.0}}
    prompt["4"]["inputs"]["images"] = ["7", 0]
    cluster.update_settings(worker_timeout_seconds=3)
    try:
        prompt_id = cluster.queue(prompt)
        assert cluster.last_queue["worker_count"] == 2, cluster.last_queue
        deadline = time.time() + 30
        while not cluster.workers[0].get("/queue").json()["queue_running"]:
            assert time.time() < deadline, cluster.log_tails(20)
            time.sleep(0.05)
        cluster.kill_worker(0)
        entry = cluster.wait(prompt_id, timeout=60)
        assert entry["status"]["status_str"] == "success", entry["status"]
        rows = [c & 0xF0F0F0 for c in saved_colours(cluster, entry)]  # the blur leaves the edges a shade darker
        assert rows == [0xF00000] + [0x0000F0] * 3, [hex(c) for c in rows]
        assert "Heartbeat timeout" in cluster.master.live_log(200)
    finally:
        cluster.update_settings(worker_timeout_seconds=20)
        cluster.restart_worker(0)
