"""The example workflows load in the real host: UI format converts to its API twin and passes validation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .harness import PACK_DIR
from .workflow_convert import ui_to_api

WORKFLOWS = PACK_DIR / "workflows"
PAIRS = [("moviedreamer_script.json", "moviedreamer_script_api.json"),
         ("moviedreamer_storyboard.json", "moviedreamer_storyboard_api.json"),
         ("moviedreamer_movie.json", "moviedreamer_movie_api.json"),
         ("moviedreamer_movie_tiny.json", "moviedreamer_movie_tiny_api.json"),
         ("moviedreamer_toycinema.json", "moviedreamer_toycinema_api.json")]


@pytest.fixture
def model_files(host, tmp_path):
    """Empty stand-ins for the model files the workflows name (validation checks names, not contents)."""
    fp = host.folder_paths
    files = {"checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
             "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "clip_vision_h.safetensors"],
             "ipadapter": ["ip-adapter_sd15.safetensors", "ip-adapter_sdxl_vit-h.safetensors"],
             "diffusion_models": ["wan2.1_i2v_480p_14B_fp16.safetensors"],
             "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["wan_2.1_vae.safetensors"]}
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


@pytest.mark.parametrize("ui_name,api_name", PAIRS)
def test_ui_workflow_matches_its_api_twin_and_validates(host, model_files, ui_name, api_name):
    ui = json.loads((WORKFLOWS / ui_name).read_text())
    api = json.loads((WORKFLOWS / api_name).read_text())
    converted = ui_to_api(ui, lambda t: host.nodes.NODE_CLASS_MAPPINGS[t].INPUT_TYPES())
    assert converted == api
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt("wf", api, None))
    assert valid, (error, node_errors)
    assert outputs
