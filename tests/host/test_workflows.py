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
PAIRS = [("moviedreamer_script.json", "moviedreamer_script_api.json")]


@pytest.fixture
def model_files(host, tmp_path):
    """Empty stand-ins for the model files the workflows name (validation checks names, not contents)."""
    fp = host.folder_paths
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "v1-5-pruned-emaonly.safetensors").write_bytes(b"")
    fp.add_model_folder_path("checkpoints", str(ckpt))
    fp.filename_list_cache.clear()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(Path(fp.get_input_directory()) / "bo_reference.png")
    yield
    fp.folder_names_and_paths["checkpoints"][0].remove(str(ckpt))
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
