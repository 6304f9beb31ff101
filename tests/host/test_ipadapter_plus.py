"""IP-Adapter plus renders as the reference implementation does: its unconditional pass reads the resampler's
projection of a *black image* encoded by the same CLIP Vision model (cubiq/ComfyUI_IPAdapter_plus, IPAdapterPlus.py
lines 380-383; see nodes/unconditional_tokens.py), not of zero features."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from .test_render import script


def _image(photos, name: str) -> torch.Tensor:
    with Image.open(photos / name) as im:
        im = ImageOps.fit(im.convert("RGB"), (64, 64))
    return torch.from_numpy(np.array(im)).float().div(255)[None]


def test_plus_unconditional_pass_reads_a_black_images_clip_vision_features(host, testing, patching, photos, model_dirs):
    with torch.inference_mode():  # as the executor runs nodes
        _check_plus_unconditional_pass(host, testing, patching, photos)


def _check_plus_unconditional_pass(host, testing, patching, photos):
    render = host.pack_submodule("nodes.render_nodes")
    script_node = host.pack_submodule("nodes.script_encode_node")
    hostmod = host.pack_submodule("nodes.host")
    from moviedreamer_core.storyboard import derive_seed

    vision, clip, model, vae = testing.tiny_clip_vision(0), testing.tiny_clip(0), testing.tiny_sd(0), testing.tiny_vae(0)
    board = render.MovieDreamerKeyframeEncode.execute(_image(photos, "hopper.png"), vision,
                                                      "penultimate_hidden_states").args[0]
    # the reference's unconditional image: torch.zeros([1, clipvision_size, clipvision_size, 3]) through CLIP Vision
    black = vision.encode_image(torch.zeros(1, 224, 224, 3)).penultimate_hidden_states.float()
    assert float(black.abs().mean()) > 0.01, "a black image's features are not zero features"
    torch.testing.assert_close(board.null_tokens, black)
    plain_board = render.MovieDreamerKeyframeEncode.execute(_image(photos, "hopper.png"), vision, "image_embeds").args[0]
    torch.testing.assert_close(plain_board.null_tokens, vision.encode_image(torch.zeros(1, 32, 32, 3)).image_embeds[:, None].float())

    handle = render.MovieDreamerRendererLoader.execute("ipadapter/tiny_ipadapter_plus.safetensors").args[0]
    assert handle.cfg.source == "ipadapter-plus"
    embeds = script_node.ScriptEncode.execute(script(1, " plus uncond"), "(none: use the text above)", "clip_vision_crop",
                                              clip=clip, images=_image(photos, "hopper.png"), clip_vision=vision).args[1]
    positive = host.nodes.CLIPTextEncode().encode(clip, "a portrait")[0]
    negative = host.nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    out = render.IdentityDiffusionRender.execute(
        model, vae, handle, board, embeds, seed=5, steps=2, cfg=4.0, sampler_name="euler", scheduler="normal", width=64,
        height=64, token_weight=1.0, identity_weight=0.0, start_percent=0.0, end_percent=1.0, project_name="plus_uncond",
        negative_prompt="", clip=clip, positive=positive, negative=negative)
    rendered = out.args[1]["samples"]

    # the same render done by hand on the host's sampler, the unconditional chunks reading the given features
    layers = patching.discover_cross_attention(model)
    sampling = model.get_model_object("model_sampling")
    adapter = hostmod.load_managed(handle.patcher)

    def by_hand(uncond_features):
        with torch.no_grad():
            state = patching.AdapterState(handle.patcher, layers, adapter.project_tokens(board.tokens[:1]),
                                          adapter.project_tokens(uncond_features), None, 1.0, 0.0,
                                          sampling.percent_to_sigma(0.0), sampling.percent_to_sigma(1.0))
        return hostmod.sample_latent(patching.patch_model(model, state), derive_seed(5, 0, "render"), 2, 4.0, "euler",
                                     "normal", positive, negative, hostmod.empty_latent(model, 64, 64))

    torch.testing.assert_close(rendered, by_hand(black))
    assert not torch.allclose(rendered, by_hand(torch.zeros_like(black)), atol=1e-4), "zero features render otherwise"
