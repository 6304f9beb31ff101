"""The test cluster itself (tests/distributed/cluster.py): a prompt queued through ComfyUI-Distributed's own
``POST /distributed/queue`` runs on the master and on both workers, and the master's DistributedCollector returns the
master's rows followed by each worker's, in the workers' order. Host-only nodes, no model: seconds after start-up.

Each participant makes a batch of plain images whose size and colour say who made it: ``DistributedSeed`` (seed 1)
gives the batch size (master 1, worker ``i`` 1 + (i + 1)), ``DistributedValue`` the colour (master red, worker 1
green, worker 2 blue).
"""

from __future__ import annotations

import json

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
