"""What decides whether a finished keyframe or shot is reused (issue 19), on the real executor: a keyframe renders
again when the checkpoint, a LoRA or other patch on it, the VAE, the text encoder, the renderer's weights (under the
same file name) or a conditioning changes; a shot is made again when the video model's conditioning changes; and
nothing changed makes nothing again. Also the render node with a positive conditioning only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moviedreamer_core.renderer import RendererAdapter, RendererConfig, save_renderer

from .test_render import graph, previews, script
from .test_shot_animate import wan_graph


def keyframe_stamps(host, project: str) -> dict:
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / project / "keyframes"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("keyframe_*.png")}


class Renders:
    """Queue variants of one graph into one project; ``changed(g)`` says how many keyframes rendered again."""

    def __init__(self, host, project: str, n: int = 3):
        self.host, self.project, self.n = host, project, n
        self.stamps: dict = {}

    def graph(self, **kw) -> dict:
        return graph(script(self.n), project=self.project, **kw)

    def changed(self, g: dict) -> int:
        previews(self.host, self.host.run(g))
        now = keyframe_stamps(self.host, self.project)
        assert len(now) == self.n
        count = sum(1 for name, stamp in now.items() if self.stamps.get(name) != stamp)
        self.stamps = now
        return count


def separate_vae(g: dict, model_seed: int = 0, vae_seed: int = 0) -> dict:
    """The UNet from one tiny checkpoint node, the VAE from another: the two change independently."""
    g["9"]["inputs"]["seed"] = model_seed
    g["19"] = {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": vae_seed}}
    g["11"]["inputs"]["vae"] = ["19", 1]
    return g


def test_another_checkpoint_renders_every_keyframe_again_and_the_same_one_none(host, photos, model_dirs):
    r = Renders(host, "sig_checkpoint")
    assert r.changed(separate_vae(r.graph())) == 3
    assert r.changed(separate_vae(r.graph())) == 0, "nothing changed: nothing renders again"
    assert r.changed(separate_vae(r.graph(), model_seed=1)) == 3, "another checkpoint (same VAE, same file names)"
    assert r.changed(separate_vae(r.graph(), model_seed=1)) == 0
    assert r.changed(separate_vae(r.graph(), model_seed=1, vae_seed=1)) == 3, "another VAE"
    clip = separate_vae(r.graph(), model_seed=1, vae_seed=1)
    clip["1"]["inputs"]["seed"] = 1  # the text encoder of ScriptEncode and of the render node
    assert r.changed(clip) == 3, "another text encoder"
    clip["20"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["1", 0], "stop_at_clip_layer": -2}}
    clip["11"]["inputs"]["clip"] = ["20", 0]
    assert r.changed(clip) == 3, "the text encoder's layer (CLIPSetLastLayer)"
    assert r.changed(clip) == 0


@pytest.fixture(scope="module")
def tiny_lora(host, testing, tmp_path_factory) -> str:
    """A LoRA for the tiny UNet's cross-attention keys, in the generic key format the host's loader reads."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("loras")
    state = testing.tiny_sd(0).model.state_dict()
    g = torch.Generator().manual_seed(0)
    lora = {}
    for key in [k for k in state if k.endswith("attn2.to_k.weight") or k.endswith("attn2.to_v.weight")]:
        out_dim, in_dim = state[key].shape
        base = key[: -len(".weight")]
        lora[f"{base}.lora_up.weight"] = torch.randn(out_dim, 4, generator=g) * 0.5
        lora[f"{base}.lora_down.weight"] = torch.randn(4, in_dim, generator=g) * 0.5
    save_file(lora, str(folder / "tiny_lora.safetensors"))
    with host.model_folder("loras", folder):
        yield "tiny_lora.safetensors"


def test_a_lora_or_a_sampling_patch_on_the_model_renders_every_keyframe_again(host, photos, model_dirs, tiny_lora):
    r = Renders(host, "sig_patches")
    assert r.changed(r.graph()) == 3
    g = r.graph()
    g["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["9", 0], "lora_name": tiny_lora,
                                                              "strength_model": 1.0}}
    g["11"]["inputs"]["model"] = ["20", 0]
    assert r.changed(g) == 3, "a LoRA"
    assert r.changed(g) == 0, "the same LoRA: nothing"
    g["20"]["inputs"]["strength_model"] = 0.5
    assert r.changed(g) == 3, "the LoRA's strength"
    g["21"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["20", 0], "sampling": "v_prediction",
                                                                "zsnr": False}}
    g["11"]["inputs"]["model"] = ["21", 0]
    assert r.changed(g) == 3, "a sampling override (an object patch)"
    assert r.changed(g) == 0


def test_the_renderers_weights_not_its_name_decide(host, testing, patching, photos, model_dirs):
    layers = patching.discover_cross_attention(testing.tiny_sd(0))
    path = model_dirs[0] / "retrained_renderer.safetensors"

    def save(seed: int, name: Path = path):
        torch.manual_seed(seed)
        adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32},
                                                 context_dim=64, layer_dims=[l.inner_dim for l in layers], context_tokens=4))
        with torch.no_grad():
            for p in adapter.parameters():
                if p.ndim > 1:
                    p.normal_(0, 0.3)
        save_renderer(adapter, str(name))

    save(0)
    save(0, model_dirs[0] / "renamed_renderer.safetensors")
    host.folder_paths.filename_list_cache.clear()
    r = Renders(host, "sig_renderer")
    assert r.changed(r.graph(renderer="retrained_renderer.safetensors")) == 3
    assert r.changed(r.graph(renderer="renamed_renderer.safetensors")) == 0, "the same weights under another name"
    save(1)  # retrained, same file name
    assert r.changed(r.graph(renderer="retrained_renderer.safetensors")) == 3


def test_a_positive_conditioning_alone_renders_and_its_changes_count(host, photos, model_dirs):
    """With ``positive`` connected and neither ``negative`` nor ``clip`` the node used to die with an AttributeError
    (it encoded the negative text with the missing CLIP); the negative is now the positive zeroed."""
    r = Renders(host, "sig_positive_only")
    g = r.graph()
    del g["11"]["inputs"]["clip"]
    g["20"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "a lighthouse at dawn"}}
    g["11"]["inputs"]["positive"] = ["20", 0]
    assert r.changed(g) == 3
    assert r.changed(g) == 0
    g["20"]["inputs"]["text"] = "a lighthouse at night"
    assert r.changed(g) == 3, "another positive prompt"
    g["21"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "blurry"}}
    g["11"]["inputs"]["negative"] = ["21", 0]
    assert r.changed(g) == 3, "a negative conditioning"
    g["21"]["inputs"]["text"] = "watermark"
    assert r.changed(g) == 3, "another negative prompt"


# ------------------------------------------------------------------------------------------------ shots


WAN_TWO = """
title: Wan Signatures
shots:
  - id: a
    scene: a field
    action: wind moves the grass.
    duration: 1
  - id: b
    scene: a field at dusk
    action: the light fades.
    duration: 1
"""


@pytest.mark.slow
def test_another_wan_prompt_makes_every_shot_again_and_the_same_one_none(host, photos, tiny_wan_file):
    g = wan_graph("sig_wan", script=WAN_TWO, shots=2)
    g["4"]["inputs"]["height"] = 64

    def made(graph: dict) -> str:
        result = host.run(graph)
        assert result.success, result.error_text()
        return result.outputs["8"]["text"][0]

    assert "2 shots, 2 made this run" in made(g)
    assert "2 shots, 0 made this run" in made(g), "nothing changed: nothing is made again"
    g["9"] = {"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["7", 1], "conditioning_from": ["7", 2],
                                                             "conditioning_to_strength": 0.5}}
    g["8"]["inputs"]["positive"] = ["9", 0]
    assert "2 shots, 2 made this run" in made(g), "another text conditioning (another Wan prompt)"
    assert "2 shots, 0 made this run" in made(g)
    g["8"]["inputs"]["negative"] = ["7", 1]
    assert "2 shots, 2 made this run" in made(g), "another negative conditioning"


# ------------------------------------------------------------------------------------------ fingerprints


def test_model_fingerprints_are_stable_and_tell_models_apart(host, testing):
    """Same weights built twice: the same fingerprint; another seed, a patch or a setting: another one. A LoRA
    applied in place while the model is loaded does not change the patcher's fingerprint."""
    import comfy.model_management as mm

    fp = host.pack_submodule("nodes.model_fingerprints").fingerprint
    for build in (testing.tiny_sd, testing.tiny_vae, testing.tiny_clip, testing.tiny_clip_vision):
        assert fp(build(0)) == fp(build(0)) != fp(build(1)), build.__name__
    model = testing.tiny_sd(0)
    base = fp(model)
    patched = model.clone()
    key = next(k for k in model.model.state_dict() if k.endswith("attn2.to_k.weight"))
    patched.add_patches({key: (torch.ones_like(model.model.state_dict()[key]) * 0.01,)}, 1.0)
    with_patch = fp(patched)
    assert with_patch != base and fp(model.clone()) == base
    mm.load_models_gpu([patched])  # the patch is now applied to the shared weights
    assert fp(patched) == with_patch and fp(model) == base
    mm.unload_all_models()
    clip = testing.tiny_clip(0)
    layered = clip.clone()
    layered.clip_layer(-2)
    assert fp(layered) != fp(clip)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a fox"))
    assert fp(cond) == fp(clip.encode_from_tokens_scheduled(clip.tokenize("a fox")))
    assert fp(cond) != fp(clip.encode_from_tokens_scheduled(clip.tokenize("a dog")))
