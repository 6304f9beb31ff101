"""ShotAnimate (animatic backend) through the real executor: the whole chain from script to movie file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch

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

#: Three shots; shot a lands on shot b's keyframe (b starts "continuous"), b cuts to c.
WAN_SCRIPT_3 = WAN_SCRIPT.replace("title: Wan Test", "title: Wan Three") + """    transition: continuous
  - id: c
    scene: a dark field
    action: stars come out.
    duration: 1
"""


def wan_graph(project: str, with_model: bool = True, script: str = WAN_SCRIPT_3, shots: int = 3) -> dict:
    g = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "2": {"class_type": "ScriptEncode", "inputs": {"script": script, "script_file": "(none: use the text above)",
                                                        "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "bilinear", "width": 64,
                                                      "height": 40, "crop": "center"}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": shots}},
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
def test_wan_three_shot_movie_chains_long_shots_and_lands_on_the_next_keyframe(host, photos, tiny_wan_file):
    """Shot a (8 frames) ends on shot b's keyframe through WanFirstLastFrameToVideo; b (16 frames) is two chained
    clips; c (8 frames) follows a cut. The movie decodes with every frame at the right size."""
    bad = host.run(wan_graph("wan_bad_size"))
    assert not bad.success and "multiples of 16; got 64x40" in bad.error_text()
    refused = wan_graph("wan_min_cfg")
    refused["4"]["inputs"]["height"] = 64
    refused["8"]["inputs"]["min_cfg"] = 1.0
    refused = host.run(refused)
    assert not refused.success and "min_cfg (linear guidance over frames) is for SVD" in refused.error_text()
    g = wan_graph("wan")
    g["4"]["inputs"]["height"] = 64
    result = host.run(g)
    assert result.success, result.error_text()
    assert "32 frames (4.0 s) in 3 shots, 3 made this run" in result.outputs["8"]["text"][0]
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "wan"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [manifest["shots"][str(i)]["frames"] for i in range(3)] == [8, 16, 8]
    assert {manifest["shots"][str(i)]["backend"] for i in range(3)} == {"wan"}
    assert video_info(str(folder / "wan.mp4")) == {"frames": 32, "width": 64, "height": 64, "fps": 8.0}
    # shot a lands on shot b's keyframe: a new keyframe for b re-makes a and b, c stays
    g["10"] = {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}}
    g["11"] = {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["10", 0]}}
    g["12"] = {"class_type": "ImageBatch", "inputs": {"image1": ["11", 0], "image2": ["4", 0]}}
    g["8"]["inputs"]["keyframes"] = ["12", 0]
    again = host.run(g)
    assert again.success, again.error_text()
    assert "3 shots, 2 made this run" in again.outputs["8"]["text"][0]
    assert video_info(str(folder / "wan.mp4"))["frames"] == 32


def test_a_participant_that_makes_no_shot_never_loads_the_video_model(host, photos, tiny_wan_file):
    """ShotAnimate's video model inputs are lazy: a distributed master that only orchestrates (``master_renders`` off,
    the workers share every shot) runs it without the host ever executing their loaders (the Wan UNETLoader, the
    Wan VAE and conditioning), where a Wan 14B and its T5 would be tens of GB loaded for nothing; a participant with
    shots to make loads them and makes its shots with the model."""
    from moviedreamer_core.distribution.participation import Participation

    def run(who):
        g = wan_graph(f"lazy_{who.me}", script=WAN_SCRIPT, shots=2)
        g["4"]["inputs"]["height"] = 64
        g["8"]["inputs"]["distributed"] = who.to_json()
        result = host.run(g)
        assert result.success, result.error_text()
        executed = {e["node"] for e in result.events("executing") if e.get("node")}
        return executed, result.outputs["8"]["text"][0]

    executed, text = run(Participation("job1", "master", ("w1", "w2"), master_renders=False))
    assert "distributed (master, 2 participants): 0 shots of 2 made here" in text, text
    assert "8" in executed and not executed & {"6", "7"}, executed
    executed, text = run(Participation("job1", "w1", ("w1", "w2"), master_renders=False))
    assert "distributed (w1, 2 participants): 1 shots of 2 made here, 1 this run" in text, text
    assert {"6", "7", "8"} <= executed, executed
    journal = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "lazy_w1" / "journals" / "w1.jsonl"
    shots = [json.loads(line)["value"] for line in journal.read_text().splitlines() if '"shots"' in line]
    assert [s["backend"] for s in shots] == ["wan"]  # its share made with the model it loaded


@pytest.mark.slow
def test_wan_shot_before_a_continuous_one_ends_on_its_keyframe(host, photos, tiny_wan_file):
    """Shot a is followed by b, whose transition is ``continuous``: a's last frame must be b's keyframe, up to the
    video codec's error; frame counts alone would not show a shot that ends somewhere else. (The tiny Wan model is
    untrained: conditioned on the end image by ``WanFirstLastFrameToVideo`` alone, it ended 0.39 away from even the
    VAE's own rendering of the keyframe; the backend now eases the last frames onto it, ``i2v_backends.ease_onto``.)
    The keyframe is what the graph hands ShotAnimate: the host's LoadImage and ImageScale on the same photo."""
    import numpy as np

    from moviedreamer_core.video_io import read_frames

    g = wan_graph("wan_lands")
    g["4"]["inputs"]["height"] = 64
    g["10"] = {"class_type": "LoadImage", "inputs": {"image": "hopper.png"}}
    g["13"] = {"class_type": "ImageScale", "inputs": {"image": ["10", 0], "upscale_method": "bilinear", "width": 64,
                                                       "height": 64, "crop": "center"}}
    g["11"] = {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["13", 0]}}
    g["12"] = {"class_type": "ImageBatch", "inputs": {"image1": ["11", 0], "image2": ["4", 0]}}
    g["8"]["inputs"]["keyframes"] = ["12", 0]  # a: astronaut, b: hopper, c: astronaut
    result = host.run(g)
    assert result.success, result.error_text()
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "wan_lands"
    manifest = json.loads((folder / "manifest.json").read_text())
    frames_a = read_frames(str(folder / manifest["shots"]["0"]["file"]))
    nodes = host.nodes.NODE_CLASS_MAPPINGS
    loaded = nodes["LoadImage"]().load_image("hopper.png")[0]
    keyframe_b = nodes["ImageScale"]().upscale(loaded, "bilinear", 64, 64, "center")[0][0].numpy()
    last_of_a = frames_a[-1].astype(np.float32) / 255
    error = float(np.abs(last_of_a - keyframe_b).mean())
    assert error <= 0.03, f"shot a ends {error:.3f} (mean absolute) from shot b's keyframe"
    # the model's own frames before the landing: a's middle is not simply b's keyframe held
    assert float(np.abs(frames_a[len(frames_a) // 2].astype(np.float32) / 255 - keyframe_b).mean()) > 0.05


@pytest.fixture(scope="module")
def tiny_ltxv_file(host, tmp_path_factory):
    """A tiny LTX-Video checkpoint in a diffusion_models folder, loaded by the host's own UNETLoader."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("ltxv_models")
    save_file(host.pack_submodule("tests.host.tiny_nodes").tiny_ltxv_state_dict(0), str(folder / "tiny_ltxv.safetensors"))
    with host.model_folder("diffusion_models", folder):
        yield "tiny_ltxv.safetensors"


def ltxv_graph(project: str, height: int = 64) -> dict:
    g = wan_graph(project, script=WAN_SCRIPT, shots=2)
    g["4"]["inputs"]["height"] = height
    g["6"]["inputs"]["unet_name"] = "tiny_ltxv.safetensors"
    g["7"] = {"class_type": "MovieDreamerTestTinyLTXVExtras", "inputs": {"seed": 0}}
    return g


def test_ltxv_backend_through_the_hosts_loader(host, photos, tiny_ltxv_file):
    """LTX-Video makes 8k+1 frames: shot a (8 frames) is one 9-frame clip cut to 8; shot b (16) chains two."""
    bad = host.run(ltxv_graph("ltxv_bad", height=48))
    assert not bad.success and "ltxv needs keyframes whose width and height are multiples of 32; got 64x48" in bad.error_text()
    result = host.run(ltxv_graph("ltxv"))
    assert result.success, result.error_text()
    assert "24 frames (3.0 s) in 2 shots, 2 made this run" in result.outputs["8"]["text"][0]
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "ltxv"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shots"]["0"]["backend"] == "ltxv" and manifest["shots"]["1"]["frames"] == 16
    assert video_info(str(folder / "ltxv.mp4")) == {"frames": 24, "width": 64, "height": 64, "fps": 8.0}


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
    # linear guidance over frames (the host's VideoLinearCFGGuidance) changes the frames, not their number
    linear = svd_graph("svd_linear")
    linear["8"]["inputs"]["min_cfg"] = 1.0
    linear = host.run(linear)
    assert linear.success, linear.error_text()
    linear_folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "svd_linear"
    assert video_info(str(linear_folder / "svd_linear.mp4"))["frames"] == 18


def test_svd_linear_guidance_reaches_the_sampler(host, testing):
    """min_cfg > 0 changes the sampled latents through the host's VideoLinearCFGGuidance; 0 leaves the model as is.
    (Compared on latents: the tiny SD VAE decodes SVD's small latents to near-black frames.)"""
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning

    backends, hostmod = host.pack_submodule("nodes.i2v_backends"), host.pack_submodule("nodes.host")
    model, clip_vision = testing.tiny_svd(0), testing.tiny_clip_vision(0)
    vae = testing.tiny_vae(0)
    image = torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    pos, neg, latent = SVD_img2vid_Conditioning().encode(clip_vision, image, vae, 64, 48, 5, 127, 6, 0.0)

    def sample(m):
        return hostmod.sample_latent(m, 0, 2, 3.0, "euler", "karras", pos, neg, latent["samples"])

    assert backends.svd_guided_model(model, 0.0) is model
    plain, rising = sample(model), sample(backends.svd_guided_model(model, 1.0))
    assert torch.equal(sample(model), plain)
    assert (plain - rising).abs().mean() > 1e-3 * plain.abs().mean(), "min_cfg reaches the sampler"


@pytest.mark.slow
def test_wan22_ti2v_5b_starts_from_the_keyframe_as_the_hosts_wan22_latent_node(host, tmp_path):
    """Wan 2.2 TI2V 5B (``model_base.WAN22``: 48-channel latents at 1/16, no image channels) animates through the
    host's ``Wan22ImageToVideoLatent``: the shot equals that node + KSampler + VAEDecode with the clip's seed, and
    another keyframe gives another shot. Through ``WanImageToVideo`` the keyframe never reached the model (two
    keyframes gave the same movie) and the 16-channel latent at 1/8 decoded at twice the size, cut into strips."""
    from safetensors.torch import save_file

    testing = host.pack_submodule("tests.host.tiny_nodes")
    backends = host.pack_submodule("nodes.i2v_backends")
    timing_mod = host.pack_submodule("moviedreamer_core.animate.timing")
    derive_seed = host.pack_submodule("moviedreamer_core.storyboard").derive_seed
    from comfy_extras.nodes_wan import Wan22ImageToVideoLatent

    save_file(testing.tiny_wan22_ti2v_state_dict(0), str(tmp_path / "tiny_wan22.safetensors"))
    with host.model_folder("diffusion_models", tmp_path):
        model = host.nodes.NODE_CLASS_MAPPINGS["UNETLoader"]().load_unet("tiny_wan22.safetensors", "default")[0]
    vae = testing.tiny_wan22_vae(0)
    g = torch.Generator().manual_seed(0)
    pos, neg = [[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]], [[torch.zeros(1, 8, 4096), {}]]
    settings = dict(fps=5.0, steps=2, cfg=3.0, sampler_name="euler", scheduler="simple", seed=0, size=(64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        backends.make_backend(model, vae, pos, neg, None, **{**settings, "size": (48, 64)})
    with pytest.raises(ValueError, match=r"16-channel latents but this wan22 model denoises 48-channel ones: connect the "
                                         r"video model's own VAE \(Wan 2.2 TI2V 5B: wan2.2_vae\)$"):
        backends.make_backend(model, testing.tiny_wan_vae(0), pos, neg, None, **settings)
    kind, backend = backends.make_backend(model, vae, pos, neg, None, **settings)
    assert kind == "wan22"
    timing = timing_mod.ShotTiming(0, "a", 5, (0,), timing_mod.split_into_clips(5, 5))
    keyframes = [(np.random.RandomState(s).rand(64, 64, 3) * 255).astype(np.uint8) for s in (1, 2)]
    shots = [np.stack(list(backend(timing, None, [kf], None))) for kf in keyframes]
    assert shots[0].shape == (5, 64, 64, 3)
    assert not np.array_equal(shots[0], shots[1]), "the keyframe reaches the model"
    latent = Wan22ImageToVideoLatent.execute(vae, 64, 64, 5, 1, start_image=torch.from_numpy(keyframes[0]).float().div(255)[None]).args[0]
    with torch.no_grad():
        sampled = host.nodes.NODE_CLASS_MAPPINGS["KSampler"]().sample(model, derive_seed(0, 0, "animate"), 2, 3.0, "euler",
                                                                      "simple", pos, neg, latent)[0]
        frames = vae.decode(sampled["samples"]).reshape(-1, 64, 64, 3)[:5]
    assert np.array_equal(shots[0], (frames.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy())


@pytest.mark.slow
def test_wan22_i2v_a14b_layout_animates_as_the_hosts_wan_image_to_video_and_t2v_is_still_refused(host, tmp_path):
    """Wan 2.2 I2V A14B has no CLIP image embedding (no ``img_emb``): the host's loader detects it as ``WAN21_T2V``
    (``image_to_video`` False) although its 36 input channels read WanImageToVideo's start image (the host's own Wan
    2.2 14B i2v template). ShotAnimate refused it as "text-to-video"; it animates it as the host's nodes do. A real
    text-to-video Wan (16 input channels) is still refused."""
    from safetensors.torch import save_file
    from comfy_extras.nodes_wan import WanImageToVideo

    testing = host.pack_submodule("tests.host.tiny_nodes")
    backends = host.pack_submodule("nodes.i2v_backends")
    timing_mod = host.pack_submodule("moviedreamer_core.animate.timing")
    derive_seed = host.pack_submodule("moviedreamer_core.storyboard").derive_seed
    for name, in_dim in (("a14b_layout.safetensors", 36), ("t2v.safetensors", 16)):
        save_file(testing.tiny_wan_state_dict(0, model_type="t2v", in_dim=in_dim), str(tmp_path / name))
    loader = host.nodes.NODE_CLASS_MAPPINGS["UNETLoader"]()
    with host.model_folder("diffusion_models", tmp_path):
        a14b = loader.load_unet("a14b_layout.safetensors", "default")[0]
        t2v = loader.load_unet("t2v.safetensors", "default")[0]
    assert not a14b.model.image_to_video  # how the host builds it
    vae, pos, neg = testing.MovieDreamerTestTinyWanExtras.execute(0).args
    settings = dict(fps=8.0, steps=2, cfg=3.0, sampler_name="euler", scheduler="simple", seed=0, size=(64, 64))
    with pytest.raises(ValueError, match="text-to-video"):
        backends.make_backend(t2v, vae, pos, neg, None, **settings)
    kind, backend = backends.make_backend(a14b, vae, pos, neg, None, **settings)
    assert kind == "wan"
    keyframe = (np.random.RandomState(3).rand(64, 64, 3) * 255).astype(np.uint8)
    shot = np.stack(list(backend(timing_mod.ShotTiming(0, "a", 5, (0,), timing_mod.split_into_clips(5, 5)), None,
                                 [keyframe], None)))
    with torch.no_grad():
        p, n, latent = WanImageToVideo.execute(pos, neg, vae, 64, 64, 5, 1,
                                               start_image=torch.from_numpy(keyframe).float().div(255)[None]).args
        sampled = host.nodes.NODE_CLASS_MAPPINGS["KSampler"]().sample(a14b, derive_seed(0, 0, "animate"), 2, 3.0, "euler",
                                                                      "simple", p, n, latent)[0]
        frames = vae.decode(sampled["samples"]).reshape(-1, 64, 64, 3)[:5]
    assert np.array_equal(shot, (frames.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy())


def test_an_ltxv_model_given_another_vae_is_told_of_its_own_not_of_wan_files(host, tiny_ltxv_file):
    """A review: the VAE refusal named the Wan VAE files whatever the model ("connect the video model's own VAE (Wan
    2.1 and Wan 2.2 14B: wan_2.1_vae; Wan 2.2 TI2V 5B: wan2.2_vae)" for an LTX-Video model)."""
    testing = host.pack_submodule("tests.host.tiny_nodes")
    backends = host.pack_submodule("nodes.i2v_backends")
    model = host.nodes.NODE_CLASS_MAPPINGS["UNETLoader"]().load_unet(tiny_ltxv_file, "default")[0]
    _, pos, neg = testing.MovieDreamerTestTinyLTXVExtras.execute(0).args
    settings = dict(fps=8.0, steps=2, cfg=3.0, sampler_name="euler", scheduler="simple", seed=0, size=(64, 64))
    with pytest.raises(ValueError) as refused:
        backends.make_backend(model, testing.tiny_wan_vae(0), pos, neg, None, **settings)
    assert "16-channel latents but this ltxv model denoises 128-channel" in str(refused.value)
    assert "wan" not in str(refused.value).lower(), str(refused.value)
