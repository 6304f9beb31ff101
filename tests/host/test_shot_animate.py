"""ShotAnimate (animatic backend) through the real executor: the whole chain from script to movie file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moviedreamer_core.video_io import video_info

from .test_render import graph, previews, script


def movie_graph(n: int, project: str) -> dict:
    g = graph(script(n), project=project)
    g["13"] = {"class_type": "ShotAnimate", "inputs": {"keyframes": ["11", 0], "script": ["2", 0], "backend": "animatic",
                                                       "fps": 8.0, "frames_per_clip": 25, "project_name": project,
                                                       "seed": 0, "steps": 2, "cfg": 3.0, "sampler_name": "euler",
                                                       "scheduler": "simple"}}
    return g


def test_script_to_movie_file(host, photos, model_dirs):
    result = host.run(movie_graph(3, "movie"))
    previews(host, result)
    text = result.outputs["13"]["text"][0]
    movie = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "movie" / "movie.mp4"
    assert str(movie) in text and "3 shots, 3 made this run" in text
    assert video_info(str(movie)) == {"frames": 3 * 16, "width": 64, "height": 64, "fps": 8.0}
    progress = [d["value"] for d in result.events("progress") if d["node"] == "13"]
    assert progress[-1] == 3


def test_cancel_then_rerun_makes_only_the_missing_shots(host, photos, model_dirs):
    cancelled = host.run_and_cancel(movie_graph(4, "resume_movie"), node="13", at_progress=2)
    assert cancelled.events("execution_interrupted")
    shots = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "resume_movie" / "shots"
    assert len(list(shots.glob("shot_*.mp4"))) == 2
    again = host.run(movie_graph(4, "resume_movie"))
    previews(host, again)
    assert "4 shots, 2 made this run" in again.outputs["13"]["text"][0]


WAN_SCRIPT = """
title: Wan Test
shots:
  - id: a
    scene: a field
    action: wind moves the grass.
    duration: 1
  - id: b
    scene: a field at dusk
    action: the light fades.
    duration: 2
    camera: wide
"""


@pytest.fixture(scope="module")
def tiny_wan_file(host, tmp_path_factory):
    """A tiny Wan 2.1 i2v checkpoint in a diffusion_models folder, loaded by the host's own UNETLoader."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("diffusion_models")
    save_file(host.pack_submodule("nodes.testing").tiny_wan_i2v_state_dict(0), str(folder / "tiny_wan_i2v.safetensors"))
    fp = host.folder_paths
    fp.add_model_folder_path("diffusion_models", str(folder))
    fp.filename_list_cache.clear()
    yield "tiny_wan_i2v.safetensors"
    fp.folder_names_and_paths["diffusion_models"][0].remove(str(folder))
    fp.filename_list_cache.clear()


def wan_graph(project: str, with_model: bool = True) -> dict:
    g = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "2": {"class_type": "ScriptEncode", "inputs": {"script": WAN_SCRIPT, "script_file": "(none: use the text above)",
                                                        "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "bilinear", "width": 64,
                                                      "height": 40, "crop": "center"}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": 2}},
        "6": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_i2v.safetensors", "weight_dtype": "default"}},
        "7": {"class_type": "MovieDreamerTestTinyWanExtras", "inputs": {"seed": 0}},
        "8": {"class_type": "ShotAnimate", "inputs": {
            "keyframes": ["5", 0], "script": ["2", 0], "backend": "auto", "fps": 8.0, "frames_per_clip": 9,
            "project_name": project, "seed": 0, "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple",
            "vae": ["7", 0], "positive": ["7", 1], "negative": ["7", 2]}},
    }
    if with_model:
        g["8"]["inputs"]["model"] = ["6", 0]
    return g


@pytest.mark.slow
def test_wan_image_to_video_backend_chains_long_shots(host, photos, tiny_wan_file):
    bad = host.run(wan_graph("wan_bad_size"))
    assert not bad.success and "multiples of 16; got 64x40" in bad.error_text()
    g = wan_graph("wan")
    g["4"]["inputs"]["height"] = 64
    result = host.run(g)
    assert result.success, result.error_text()
    assert "24 frames (3.0 s) in 2 shots, 2 made this run" in result.outputs["8"]["text"][0]
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "wan"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shots"]["1"]["backend"] == "wan" and manifest["shots"]["1"]["frames"] == 16
    assert video_info(str(folder / "wan.mp4")) == {"frames": 24, "width": 64, "height": 64, "fps": 8.0}


def svd_graph(project: str, clip_vision: bool = True) -> dict:
    g = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "2": {"class_type": "ScriptEncode", "inputs": {"script": WAN_SCRIPT, "script_file": "(none: use the text above)",
                                                        "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "hopper.png"}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "bilinear", "width": 64,
                                                      "height": 48, "crop": "center"}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": 2}},
        "6": {"class_type": "MovieDreamerTestTinySVD", "inputs": {"seed": 0}},
        "7": {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": 0}},
        "9": {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}},
        "8": {"class_type": "ShotAnimate", "inputs": {
            "keyframes": ["5", 0], "script": ["2", 0], "backend": "auto", "fps": 6.0, "frames_per_clip": 5,
            "project_name": project, "seed": 0, "steps": 2, "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras",
            "model": ["6", 0], "vae": ["7", 1]}},
    }
    if clip_vision:
        g["8"]["inputs"]["clip_vision"] = ["9", 0]
    return g


@pytest.mark.slow
def test_svd_backend_in_process_chains_clips(host, photos):
    refused = host.run(svd_graph("svd_no_cv", clip_vision=False))
    assert not refused.success and "the svd image-to-video backend needs clip_vision connected" in refused.error_text()
    result = host.run(svd_graph("svd"))
    assert result.success, result.error_text()
    assert "18 frames (3.0 s) in 2 shots, 2 made this run" in result.outputs["8"]["text"][0]
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "svd"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shots"]["1"]["backend"] == "svd" and manifest["shots"]["1"]["frames"] == 12  # 5 + 4 + 3 new frames
    assert video_info(str(folder / "svd.mp4")) == {"frames": 18, "width": 64, "height": 48, "fps": 6.0}
