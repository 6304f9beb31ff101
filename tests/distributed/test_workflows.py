"""The distributed example workflows (``workflows/*_distributed.json`` and their API twins) on a host that has
ComfyUI-Distributed: the test cluster's master. The host tests' single server loads only this pack, so there the
twins validate only without their collector (tests/host/test_workflows.py).

- Each UI workflow converts to its API twin against the master's live node definitions (``/object_info``, this
  pack's and ComfyUI-Distributed's), as tests/host/test_workflows.py converts the others; and the master's front-end
  itself, having loaded the UI workflow, queues exactly the API twin (``app.graphToPrompt``).
- The master accepts the movie twin on its ordinary queue (the host's own validation, with empty stand-ins for the
  model files it names); it then fails at loading the first stand-in, as it should. The toy twin is made into a movie
  by test_toy_movie.py.
- Each UI workflow as the master's front-end (ComfyUI-Distributed's included) draws it hides nothing, by the rules of
  tests/host/test_browser.py.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ..host.browser import drawn_layout_problems, queued_prompts
from ..host.test_workflows import DISTRIBUTED_PAIRS, pair_id
from ..host.workflow_convert import ui_to_api
from ..workflow_layout import ui_workflows

#: The model files the movie twin names, by folder (``Cluster.models_dir``); the workflows' Notes say the same.
MOVIE_MODEL_FILES = {"checkpoints": ["sd_xl_base_1.0.safetensors"],
                     "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "clip_vision_h.safetensors"],
                     "ipadapter": ["ip-adapter_sdxl_vit-h.safetensors"],
                     "diffusion_models": ["wan2.1_i2v_480p_14B_fp16.safetensors"],
                     "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["wan_2.1_vae.safetensors"]}
LOADERS = {"CheckpointLoaderSimple", "CLIPVisionLoader", "MovieDreamerRendererLoader", "UNETLoader", "CLIPLoader",
           "VAELoader"}


def test_the_distributed_pairs_are_the_distributed_ui_workflows():
    assert sorted(ui for ui, _ in DISTRIBUTED_PAIRS) == ui_workflows(distributed=True)


def test_each_distributed_ui_workflow_converts_to_its_api_twin_on_the_master(cluster):
    definitions = cluster.master.get("/object_info").json()
    for ui_path, api_path in DISTRIBUTED_PAIRS:
        ui = json.loads(ui_path.read_text())
        converted = ui_to_api(ui, lambda t: definitions[t]["input"])
        assert converted == json.loads(api_path.read_text()), pair_id(ui_path)


def test_the_masters_front_end_queues_each_distributed_ui_workflow_as_its_api_twin(cluster):
    prompts = queued_prompts(cluster.master, [ui for ui, _ in DISTRIBUTED_PAIRS])
    for ui_path, api_path in DISTRIBUTED_PAIRS:
        assert prompts[ui_path] == json.loads(api_path.read_text()), pair_id(ui_path)


def test_the_master_accepts_the_distributed_movie_workflow(cluster):
    """POST /prompt of the movie twin on the master: valid (HTTP 200, no node errors). Run on the ordinary queue, its
    collector passes through and the first model loader fails on its empty stand-in file; the master stays usable."""
    for folder, names in MOVIE_MODEL_FILES.items():
        for name in names:
            (cluster.models_dir / folder / name).write_bytes(b"")
    for name in ("ava_reference.png", "bo_reference.png", "cy_reference.png"):
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(cluster.master.dirs["input"] / name)
    ui_path, api_path = next(pair for pair in DISTRIBUTED_PAIRS if pair[0].stem == "moviedreamer_movie_distributed")
    r = cluster.master.post_prompt(json.loads(api_path.read_text()))
    assert r.status_code == 200 and not r.json().get("node_errors"), r.text
    entry = cluster.master.wait_history(r.json()["prompt_id"], timeout=120)
    failed = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "error" and failed, entry["status"]
    assert failed[0]["node_type"] in LOADERS, failed[0]


def test_every_distributed_ui_workflow_as_the_masters_front_end_draws_it_hides_nothing(cluster, tmp_path):
    problems = drawn_layout_problems(cluster.master, ui_workflows(distributed=True), tmp_path)
    assert not problems, "\n".join(problems)
