"""The planner nodes in the real host: loader, zero-shot prior, learned planner file, progress, cancel."""

from __future__ import annotations

import pytest
import torch

from .conftest import tiny_crop_identity

SCRIPT = """
title: Two Scientists
characters:
  - name: Eileen
    description: an astronaut in an orange suit
    references: [astronaut.png]
  - name: Grace
    description: a naval officer in uniform
    references: [0]
shots:
  - id: 1
    scene: a launch pad at dawn
    action: [Eileen waves., Eileen turns around., Eileen walks away.]
    characters: [Eileen]
    duration: 3
  - id: 2
    scene: a computer room
    action: [Grace explains the program., Eileen listens.]
    characters: [Grace, Eileen]
    duration: 4
  - id: 3
    scene: an empty corridor
    action: Nobody is there.
    duration: 2
"""
N_KEYFRAMES = 6
ZERO_SHOT = "(zero-shot prior: no planner file)"



def tiny_spaces(host, testing) -> dict:
    """What the tiny test encoders declare (tests/host/tiny_nodes.py): the planner file must match these."""
    return dict(text_space={"encoder": "comfy.SD1ClipModel.pooled", "dim": 64},
                identity_space={"encoder": tiny_crop_identity(host, testing), "dim": 32},
                token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32})


def graph(planner_name=ZERO_SHOT, seed=0, few_shot=True, guidance=1.5):
    return {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "5": {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "hopper.png"}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": SCRIPT, "script_file": "(none: use the text above)", "clip": ["1", 0],
            "face_embedder": "clip_vision_crop", "images": ["3", 0], "clip_vision": ["5", 0]}},
        "6": {"class_type": "MovieDreamerPlannerLoader", "inputs": {"planner_name": planner_name}},
        "7": {"class_type": "ARKeyframePlanner", "inputs": {
            "planner": ["6", 0], "script_embeds": ["2", 1], "seed": seed, "temperature": 0.8, "guidance": guidance,
            "context_window": 2, "few_shot_references": few_shot}},
        "8": {"class_type": "MovieDreamerStoryboardInfo", "inputs": {"storyboard": ["7", 0], "max_keyframes": 50}},
    }


@pytest.fixture(scope="module")
def planner_files(host, testing, tmp_path_factory):
    """A matching and a mismatching tiny planner file in a models/moviedreamer folder of the host."""
    from moviedreamer_core.planner import KeyframePlanner, preset, save_planner

    folder = tmp_path_factory.mktemp("moviedreamer_models")
    torch.manual_seed(0)
    spaces = tiny_spaces(host, testing)
    good = KeyframePlanner(preset("tiny", **spaces))
    save_planner(good, str(folder / "tiny_planner.safetensors"))
    wrong = KeyframePlanner(preset("tiny", **{**spaces, "text_space": {"encoder": "comfy.SDXLClipModel.pooled", "dim": 1280}}))
    save_planner(wrong, str(folder / "sdxl_planner.safetensors"))
    fp = host.folder_paths
    fp.folder_names_and_paths["moviedreamer"][0].append(str(folder))
    fp.filename_list_cache.clear()
    yield folder
    fp.folder_names_and_paths["moviedreamer"][0].remove(str(folder))
    fp.filename_list_cache.clear()


def report(result) -> str:
    assert result.valid, result.error_text()
    assert result.success, result.error_text()
    return "\n".join(result.outputs["8"]["text"])


def test_zero_shot_prior_plans_the_whole_script(host, photos):
    result = host.run(graph())
    text = report(result)
    assert f"{N_KEYFRAMES} keyframes by zero_shot_prior, clip_vision.image_embeds (K=1, D=32)" in text
    assert "#5 shot 3:" in text
    progress = [d["value"] for d in result.events("progress") if d["node"] == "7"]
    assert progress[-1] == N_KEYFRAMES


def test_learned_planner_file_loads_under_model_management_and_plans(host, photos, planner_files):
    loader = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerPlannerLoader"]
    options = loader.INPUT_TYPES()["required"]["planner_name"][1]["options"]
    assert options[0] == ZERO_SHOT and "tiny_planner.safetensors" in options
    handle = loader.execute("tiny_planner.safetensors").args[0]
    import comfy.model_patcher

    assert isinstance(handle.patcher, comfy.model_patcher.ModelPatcher)

    first = report(host.run(graph("tiny_planner.safetensors", seed=5)))
    assert f"{N_KEYFRAMES} keyframes by tiny_planner.safetensors" in first
    again = report(host.run(graph("tiny_planner.safetensors", seed=5)))
    other = report(host.run(graph("tiny_planner.safetensors", seed=6)))
    assert first == again, "same seed, same storyboard"
    assert first != other


def test_learned_planner_without_few_shot_references(host, photos, planner_files):
    text = report(host.run(graph("tiny_planner.safetensors", few_shot=False, guidance=1.0)))
    assert "'guidance': 1.0" in text


def test_planner_for_another_text_encoder_is_refused_by_name(host, photos, planner_files):
    result = host.run(graph("sdxl_planner.safetensors"))
    assert result.valid and not result.success
    text = result.error_text()
    assert "text space mismatch: the planner sdxl_planner.safetensors expects comfy.SDXLClipModel.pooled (1280-D)" in text
    assert "ScriptEncode provides comfy.SD1ClipModel.pooled (64-D)" in text


def test_cancel_stops_the_planner_within_one_keyframe(host, photos, planner_files):
    result = host.run_and_cancel(graph("tiny_planner.safetensors", seed=9), node="7", at_progress=2)
    assert result.events("execution_interrupted")
    done = [d["value"] for d in result.events("progress") if d["node"] == "7"]
    assert max(done) <= 3, done
