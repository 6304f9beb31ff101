"""The example workflows load in the real host: UI format converts to its API twin and passes validation.

The distributed workflows (``*_distributed``) use ComfyUI-Distributed's DistributedCollector, which the host here
does not load (only this pack is whitelisted): tests/distributed/test_workflows.py converts them against the live
node definitions of the test cluster's master (which has ComfyUI-Distributed), has the master validate them, and
draws them in its front-end; tests/distributed/test_toy_movie.py makes the toy movie with one. Here their prompts
validate as one instance runs them (the collector's pass-through: ShotAnimate's results straight into the gather).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..workflow_layout import uses_distributed
from .harness import PACK_DIR
from .workflow_convert import COLLECTOR, VIRTUAL_NODES, ui_to_api, without_collector

WORKFLOWS = PACK_DIR / "workflows"  # the UI workflows users get as templates; their API twins in workflows/api/
TEST_WORKFLOWS = PACK_DIR / "tests" / "workflows"  # test-only (the tiny pipeline needs MOVIEDREAMER_TEST_NODES=1)
PAIRS = [(WORKFLOWS / f"{name}.json", WORKFLOWS / "api" / f"{name}_api.json")
         for name in ("moviedreamer_script", "moviedreamer_storyboard", "moviedreamer_movie", "moviedreamer_toycinema")]
PAIRS += [(TEST_WORKFLOWS / "moviedreamer_movie_tiny.json", TEST_WORKFLOWS / "moviedreamer_movie_tiny_api.json")]
#: With ComfyUI-Distributed's collector (see the module docstring).
DISTRIBUTED_PAIRS = [(WORKFLOWS / f"{name}.json", WORKFLOWS / "api" / f"{name}_api.json")
                     for name in ("moviedreamer_movie_distributed", "moviedreamer_toycinema_distributed")]


def pair_id(pair) -> str:
    return str(pair.relative_to(PACK_DIR)) if isinstance(pair, Path) else str(pair)


@pytest.fixture
def model_files(host, tmp_path):
    """Empty stand-ins for the model files the workflows name (validation checks names, not contents)."""
    fp = host.folder_paths
    files = {"checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
             "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "clip_vision_h.safetensors"],
             "ipadapter": ["ip-adapter_sd15.safetensors", "ip-adapter_sdxl_vit-h.safetensors"],
             "diffusion_models": ["wan2.1_i2v_480p_14B_fp16.safetensors"],
             "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["wan_2.1_vae.safetensors"],
             "moviedreamer": ["tiny_renderer.safetensors"]}  # the tiny workflow's renderer (else only there when
    # another test module's model_dirs fixture ran first: this module alone failed on it)
    for folder, names in files.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"")
        fp.add_model_folder_path(folder, str(tmp_path / folder))
    fp.filename_list_cache.clear()
    for image in ("bo_reference.png", "ava_reference.png", "cy_reference.png"):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(Path(fp.get_input_directory()) / image)
    yield
    for folder in files:
        fp.folder_names_and_paths[folder][0].remove(str(tmp_path / folder))
    fp.filename_list_cache.clear()


def test_every_shipped_workflow_is_one_of_the_checked_pairs():
    """A workflow added to workflows/ (or tests/workflows/) without its twin, or not checked here, fails; so does
    one with ComfyUI-Distributed's nodes among the pairs the host here checks, or one without them among the rest."""
    shipped = {p for folder in (WORKFLOWS, WORKFLOWS / "api", TEST_WORKFLOWS) for p in folder.glob("*.json")}
    assert shipped == {p for pair in PAIRS + DISTRIBUTED_PAIRS for p in pair}
    for pairs, distributed in ((PAIRS, False), (DISTRIBUTED_PAIRS, True)):
        for path in (p for pair in pairs for p in pair):
            assert uses_distributed(json.loads(path.read_text())) == distributed, path


def test_the_template_browser_lists_exactly_the_ui_workflows(server):
    """The host's ``GET /workflow_templates`` (app/custom_node_manager.py) lists ``<pack>/workflows/*.json``, not
    subfolders: users see the six UI workflows and no API twin or test workflow; the twins are still served."""
    listing = server.get("/workflow_templates").json()
    pairs = PAIRS + DISTRIBUTED_PAIRS
    assert sorted(listing.get(server.pack_name, [])) == sorted(ui.stem for ui, _ in pairs if ui.parent == WORKFLOWS)
    for ui, api in pairs:
        if ui.parent != WORKFLOWS:
            continue
        for path in (ui, api):
            r = server.get(f"/api/workflow_templates/{server.pack_name}/{path.relative_to(WORKFLOWS).as_posix()}")
            assert r.status_code == 200 and r.json() == json.loads(path.read_text()), path


@pytest.mark.parametrize("ui_path,api_path", PAIRS, ids=pair_id)
def test_ui_workflow_matches_its_api_twin_and_validates(host, model_files, ui_path, api_path):
    ui = json.loads(ui_path.read_text())
    api = json.loads(api_path.read_text())
    converted = ui_to_api(ui, lambda t: host.nodes.NODE_CLASS_MAPPINGS[t].INPUT_TYPES())
    assert converted == api
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt("wf", api, None))
    assert valid, (error, node_errors)
    assert outputs


@pytest.mark.parametrize("ui_path,api_path", DISTRIBUTED_PAIRS, ids=pair_id)
def test_distributed_workflow_validates_as_one_instance_runs_it(host, model_files, ui_path, api_path):
    """The distributed twin with its collector left out (``without_collector``: ShotAnimate's results straight into
    MovieDreamerGather, as on a host without ComfyUI-Distributed) passes the host's validation: every node but the
    collector is checked here; the whole workflow on the cluster's master (tests/distributed/test_workflows.py)."""
    api = json.loads(api_path.read_text())
    single = without_collector(api)
    assert len(single) == len(api) - 1 and uses_distributed(api) and not uses_distributed(single)
    gather = next(v for v in single.values() if v["class_type"] == "MovieDreamerGather")
    assert single[gather["inputs"]["results"][0]]["class_type"] == "ShotAnimate"
    ui_types = {n["type"] for n in json.loads(ui_path.read_text())["nodes"]} - VIRTUAL_NODES - {COLLECTOR}
    assert ui_types == {v["class_type"] for v in single.values()} and ui_types <= set(host.nodes.NODE_CLASS_MAPPINGS)
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt("wf", single, None))
    assert valid, (error, node_errors)
    assert outputs
