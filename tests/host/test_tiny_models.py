"""The tiny host models the other host tests build on: the host's own classes, the promised shapes, finite,
and reproducible from a seed."""

from __future__ import annotations

import pytest
import torch

from . import tiny_models


def _norm_and_bias_params(module: torch.nn.Module):
    """(name, parameter, expected value) for every bias (0) and every norm layer's scale (1)."""
    for mod_name, mod in module.named_modules():
        is_norm = isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        for p_name, p in mod.named_parameters(recurse=False):
            if p_name == "bias":
                yield f"{mod_name}.{p_name}", p, 0.0
            elif is_norm and p_name == "weight":
                yield f"{mod_name}.{p_name}", p, 1.0


def _check_initialised(module: torch.nn.Module, norm_scales: bool = True) -> None:
    """Finite everywhere, biases zero, and (``norm_scales``) every norm layer's scale one."""
    tiny_models.assert_finite(module)
    checked = 0
    for name, p, value in _norm_and_bias_params(module):
        if value == 1.0 and not norm_scales:
            continue
        assert torch.all(p == value), f"{name} is not {value} after re-initialisation"
        checked += 1
    assert checked > 0


def test_tiny_clip_tokenizes_and_encodes_like_sd15(host):
    import comfy.sd
    import comfy.sd1_clip

    clip = tiny_models.tiny_clip(0)
    assert isinstance(clip, comfy.sd.CLIP)
    assert isinstance(clip.cond_stage_model, comfy.sd1_clip.SD1ClipModel)
    assert isinstance(clip.tokenizer, comfy.sd1_clip.SD1Tokenizer)
    _check_initialised(clip.cond_stage_model)
    n_params = sum(p.numel() for p in clip.cond_stage_model.parameters())
    assert n_params < 4_000_000, n_params  # mostly the 49408-word embedding table

    tokens = clip.tokenize("a red fox in the snow")
    assert set(tokens) == {"l"} and len(tokens["l"][0]) == 77  # the real tokenizer: start, words, end, padding
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    assert cond.shape == (1, 77, tiny_models.TEXT_DIM)
    assert pooled.shape == (1, tiny_models.TEXT_DIM)
    assert torch.isfinite(cond).all() and torch.isfinite(pooled).all()

    other_text = clip.encode_from_tokens(clip.tokenize("a blue whale at sea"), return_pooled=True)[1]
    assert not torch.allclose(pooled, other_text)
    again = tiny_models.tiny_clip(0)
    assert torch.equal(again.encode_from_tokens(again.tokenize("a red fox in the snow"), return_pooled=True)[1], pooled)
    other_seed = tiny_models.tiny_clip(1)
    assert not torch.equal(other_seed.encode_from_tokens(tokens, return_pooled=True)[1], pooled)


def test_tiny_clip_through_the_host_text_encode_node(host):
    """The host's own CLIPTextEncode node accepts it and gives SD-style conditioning."""
    encode = host.nodes.NODE_CLASS_MAPPINGS["CLIPTextEncode"]()
    (conditioning,) = encode.encode(tiny_models.tiny_clip(0), "a lighthouse at night")
    (tensor, extras), = conditioning
    assert tensor.shape == (1, 77, tiny_models.TEXT_DIM)
    assert extras["pooled_output"].shape == (1, tiny_models.TEXT_DIM)


def test_tiny_clip_vision_encodes_any_image_size(host):
    import comfy.clip_vision

    vision = tiny_models.tiny_clip_vision(0)
    assert isinstance(vision, comfy.clip_vision.ClipVisionModel)
    assert vision.image_size == tiny_models.VISION_IMAGE_SIZE
    _check_initialised(vision.model)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 48, 40, 3, generator=g)  # [B, H, W, C] in 0..1, resized and cropped by the host
    out = vision.encode_image(images)
    assert out["image_embeds"].shape == (3, tiny_models.VISION_EMBED_DIM)
    tokens = 1 + (tiny_models.VISION_IMAGE_SIZE // 8) ** 2  # class token + 8x8 patches
    assert out["penultimate_hidden_states"].shape == (3, tokens, tiny_models.VISION_HIDDEN_DIM)
    assert out["last_hidden_state"].shape == (3, tokens, tiny_models.VISION_HIDDEN_DIM)
    assert torch.isfinite(out["image_embeds"]).all()
    # different images land in different places; the same seed gives the same model
    cos = torch.nn.functional.cosine_similarity(out["image_embeds"][0], out["image_embeds"][1], dim=0)
    assert cos < 0.99
    assert torch.equal(tiny_models.tiny_clip_vision(0).encode_image(images)["image_embeds"], out["image_embeds"])
    assert not torch.equal(tiny_models.tiny_clip_vision(1).encode_image(images)["image_embeds"], out["image_embeds"])


def test_tiny_sd_model_samples_four_steps(host):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sample

    model = tiny_models.tiny_sd_model(0)
    assert isinstance(model, comfy.model_patcher.ModelPatcher)
    assert isinstance(model.model, comfy.model_base.BaseModel)
    # The UNet's ResBlock GroupNorms (named in_layers.0/out_layers.0, not *norm*) keep small random scales:
    # the renderer tests are calibrated on that model, so the builder leaves them as they are.
    _check_initialised(model.model, norm_scales=False)
    assert sum(p.numel() for p in model.model.parameters()) < 2_000_000

    g = torch.Generator().manual_seed(0)
    positive = [[torch.randn(1, 12, tiny_models.TEXT_DIM, generator=g), {}]]
    negative = [[torch.zeros(1, 12, tiny_models.TEXT_DIM), {}]]
    latent = torch.zeros(1, 4, 8, 8)

    def sample(seed, pos=positive):
        noise = comfy.sample.prepare_noise(latent, seed)
        return comfy.sample.sample(model, noise, 4, 5.0, "euler", "normal", pos, negative, latent,
                                   disable_pbar=True, seed=seed)

    first = sample(7)
    assert first.shape == (1, 4, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(sample(7), first)
    other_text = [[torch.randn(1, 12, tiny_models.TEXT_DIM, generator=g), {}]]
    assert not torch.allclose(sample(7, other_text), first)  # the conditioning steers the model


def test_tiny_sd_model_in_the_sdxl_layout(host):
    """Three levels, no attention at the first, deeper transformers below, an ADM (pooled) input."""
    model = tiny_models.tiny_sd_model(0, layout="sdxl").model
    _check_initialised(model, norm_scales=False)
    unet = model.diffusion_model
    assert len(unet.input_blocks) == 6 and model.adm_channels == 32  # stem, 3 levels of one block, 2 downsamples
    assert len(unet.input_blocks[1]) == 1 and len(unet.input_blocks[3]) == 2  # no attention at the first level
    x = torch.randn(1, 4, 8, 8)
    eps = unet(x, timesteps=torch.full((1,), 500.0), context=torch.randn(1, 6, tiny_models.TEXT_DIM),
               y=torch.zeros(1, 32))
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_tiny_vae_round_trips_shapes(host):
    import comfy.sd

    vae = tiny_models.tiny_vae(0)
    assert isinstance(vae, comfy.sd.VAE)
    image = torch.rand(1, 64, 48, 3, generator=torch.Generator().manual_seed(0))
    latent = vae.encode(image)
    assert latent.shape == (1, 4, 8, 6) and torch.isfinite(latent).all()
    decoded = vae.decode(latent)
    assert decoded.shape == (1, 64, 48, 3) and torch.isfinite(decoded).all()
    assert 0.05 < decoded.std() and decoded.min() >= 0 and decoded.max() <= 1  # not all clipped to one value


def test_builders_refuse_without_a_loaded_pack(monkeypatch, host):
    """The door to the builders names the fixture to request when the pack is not loaded."""
    monkeypatch.setattr(tiny_models, "pack_module_name", lambda: "not_a_loaded_pack")
    with pytest.raises(RuntimeError, match="`host` fixture"):
        tiny_models.tiny_clip(0)
