"""Tiny, randomly initialised host models for tests and CPU demos, and test-only nodes that hand them out.

The host's loader nodes accept only real-size architectures, and the machine that runs our tests has no
weights to load. These builders make the host's *own* classes (``comfy.sd.CLIP`` around an SD1.x CLIP text
model, ``comfy.clip_vision.ClipVisionModel``) at a tiny size, so tests exercise the real host code paths.

Host modules are built with weight initialisation disabled (their parameters are uninitialised memory):
every parameter is re-initialised here (normal 0.02, zero bias, unit norm scale) from a seeded generator and
checked finite.

The nodes are registered only when the environment variable ``MOVIEDREAMER_TEST_NODES=1`` is set (the test
harness sets it), so users never see them. This module lives under ``tests/`` and is imported through the pack
(``nodes/__init__.py``) only when that variable is set.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import comfy.taesd.taesd
from comfy_api.latest import io

from ...nodes import wire_types

ENV_FLAG = "MOVIEDREAMER_TEST_NODES"

TINY_CLIP_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 64}
TINY_CLIP_VISION = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 64, "image_size": 32,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 128, "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 2,
    "patch_size": 8, "projection_dim": 32, "torch_dtype": "float32",
}


def reinit_(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Deterministic re-initialisation of every parameter; raises if anything is not finite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
            elif name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.02)
        for name, p in module.named_parameters():
            if not torch.isfinite(p).all():
                raise RuntimeError(f"tiny model parameter {name} is not finite after re-initialisation")


def tiny_clip(seed: int = 0) -> comfy.sd.CLIP:
    """An SD1.x-style ``comfy.sd.CLIP`` (real tokenizer, 2-layer 64-wide text model, pooled 64-D)."""
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": dict(TINY_CLIP_TEXT)})
    reinit_(clip.cond_stage_model, seed)
    return clip


def tiny_clip_vision(seed: int = 0) -> comfy.clip_vision.ClipVisionModel:
    """A ``comfy.clip_vision.ClipVisionModel`` at 32x32 input, 2 layers, 32-D projected embeddings."""
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(TINY_CLIP_VISION, f)
        model = comfy.clip_vision.ClipVisionModel(path)
    finally:
        os.remove(path)
    # Large weights: with 0.02 every image embeds to almost the same vector (cosine 0.9999), so identities and
    # tokens of different photos could not be told apart; at 0.3 different photos land far apart (0.6-0.8).
    reinit_(model.model, seed, std=0.3)
    return model


class _TinyUNetConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 16}
    latent_format = comfy.latent_formats.SD15


def tiny_unet_config(layout: str = "sd15") -> dict:
    """A small UNet in the SD1.5 block layout (2 levels, one transformer per level), the same with transformers only
    at the second level (``sd15_low_attention``: its attention costs little at 832x480), or the SDXL one (3 levels,
    no transformer at the first level, deeper transformers below, a middle block of depth 2, ADM input)."""
    if layout == "sd15":
        return dict(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1],
                    channel_mult=[1, 2], transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1],
                    transformer_depth_middle=1, use_spatial_transformer=True, use_linear_in_transformer=True,
                    context_dim=64, legacy=False, use_checkpoint=False, adm_in_channels=None, num_classes=None,
                    dtype=torch.float32)
    if layout == "sd15_low_attention":  # cross-attention only at the second level: cheap at large sizes (832x480)
        config = tiny_unet_config("sd15")
        config.update(transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1])
        return config
    if layout == "sdxl":
        return dict(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1, 1],
                    channel_mult=[1, 2, 2], transformer_depth=[0, 2, 1], transformer_depth_output=[0, 0, 2, 2, 1, 1],
                    transformer_depth_middle=2, use_spatial_transformer=True, use_linear_in_transformer=True,
                    context_dim=64, legacy=False, use_checkpoint=False, adm_in_channels=32, num_classes="sequential",
                    dtype=torch.float32)
    raise ValueError(layout)


class _TinyPixelUNetConfig(_TinyUNetConfig):
    latent_format = comfy.latent_formats.ChromaRadiance  # 3 channels, identity scaling: pixels are the latents


def tiny_sd(seed: int = 0, layout: str = "sd15", pixel_space: bool = False):
    """A ``ModelPatcher`` around a real ``comfy.model_base.BaseModel`` with a tiny UNet (about 1 M parameters).

    ``pixel_space=True``: the UNet denoises RGB pixels directly (3 channels, with ``tiny_pixel_vae``), so what it
    renders can be compared with images by an image embedder; a random latent VAE would hide it."""
    unet_config = tiny_unet_config(layout)
    if pixel_space:  # pixels are 8x larger than latents: attention only after two downsamplings (16x16 at 64 px)
        unet_config.update(in_channels=3, out_channels=3, model_channels=32, num_res_blocks=[1, 1, 1],
                           channel_mult=[1, 1, 2], transformer_depth=[0, 0, 1], transformer_depth_output=[0, 0, 0, 0, 1, 1])
    model = comfy.model_base.BaseModel((_TinyPixelUNetConfig if pixel_space else _TinyUNetConfig)(unet_config), device="cpu")
    return _calibrated_patcher(model, unet_config, seed)


class _TinySDXLConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 16}
    latent_format = comfy.latent_formats.SDXL


#: The ADM input of ``tiny_sdxl``: the pooled text (``tiny_clip``'s 64 values) and the six 256-wide size embeddings
#: (height, width, crop top, crop left, target height, target width) that ``comfy.model_base.SDXL.encode_adm`` appends.
TINY_SDXL_ADM = TINY_CLIP_TEXT["projection_dim"] + 6 * 256


def tiny_sdxl(seed: int = 0):
    """A ``ModelPatcher`` around a real ``comfy.model_base.SDXL``: the SDXL block layout of ``tiny_sd(layout="sdxl")``,
    the SDXL latent format (scale 0.13025) and SDXL's own ADM conditioning (``encode_adm``: the pooled text of
    ``tiny_clip`` plus the image-size embeddings), so the host's sampler drives it exactly as it drives SDXL."""
    unet_config = tiny_unet_config("sdxl")
    unet_config["adm_in_channels"] = TINY_SDXL_ADM
    model = comfy.model_base.SDXL(_TinySDXLConfig(unet_config), device="cpu")
    return _calibrated_patcher(model, unet_config, seed)


def _calibrated_patcher(model, unet_config: dict, seed: int):
    """Re-initialise a tiny ``BaseModel`` (see ``tiny_sd``) and wrap it in a ``ModelPatcher``."""
    reinit_(model, seed)
    # Cross-attention outputs get larger weights so that conditioning (text, tokens, identities) visibly
    # steers this untrained model; with 0.02 everywhere its output barely depends on the context.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".attn2.to_out" in name and name.endswith("weight") or name.endswith("proj_out.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        # Calibrate the output layer so the predicted noise has about unit scale, as in a trained model (at
        # 0.02 the prediction is ~0 and nothing upstream, conditioning included, can change the result).
        unet = model.diffusion_model
        out_conv = unet.out[-1]
        x = torch.randn(2, unet_config["in_channels"], 16, 16, generator=g)
        ctx = torch.randn(2, 6, 64, generator=g)
        kwargs = {"y": torch.zeros(2, model.adm_channels)} if model.adm_channels else {}
        eps = unet(x, timesteps=torch.full((2,), 500.0), context=ctx, **kwargs)
        out_conv.weight.mul_(1.0 / eps.std().clamp_min(1e-6))
    mm = comfy.model_management
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def tiny_vae(seed: int = 0, latent_std: float | None = None) -> comfy.sd.VAE:
    """The host's ``VAE`` around a TAESD (tiny autoencoder), randomly initialised.

    ``latent_std``: also calibrate the encoder's last layer so that images encode to latents of about this spread
    (a real SD VAE's latents spread about 5 before the model's latent format scales them to about 1); without
    it the random encoder's latents (divided by TAESD's randomly initialised ``vae_scale``) run into the hundreds of
    thousands, which tests that only decode never see."""
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    reinit_(taesd, seed, std=0.08)
    if latent_std is not None:
        enc_last = [m for m in taesd.taesd_encoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        g = torch.Generator().manual_seed(seed + 2)
        with torch.no_grad():
            probe = taesd.encode(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1)  # divides by the random vae_scale
            enc_last.weight.mul_(latent_std / probe.std().clamp_min(1e-6))
            if enc_last.bias is not None:
                enc_last.bias.zero_()
    # Calibrate the decoder's last layer so decoded pixels spread over the visible range instead of all
    # clipping to black or white (random deep conv stacks either kill or explode the signal), which would
    # hide differences between latents.
    last = [m for m in taesd.taesd_decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        probe = taesd.taesd_decoder(torch.randn(2, 4, 16, 16, generator=g) * 3)
        last.weight.mul_(0.35 / probe.std().clamp_min(1e-6))
        last.bias.zero_()
    return comfy.sd.VAE(sd={k: v for k, v in taesd.state_dict().items()})


def tiny_small_vae(seed: int = 0) -> comfy.sd.VAE:
    """The host's SD-style ``AutoencoderKL`` (8x compression, 4 latent channels) at 32 channels and one res block
    per level: decoding 832x480 costs a few times less than TAESD (64 channels at full size)."""
    import comfy.ldm.models.autoencoder

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    params = {"ddconfig": ddconfig, "embed_dim": 4}
    model = comfy.ldm.models.autoencoder.AutoencoderKL(**params)
    reinit_(model, seed, std=0.05)
    return comfy.sd.VAE(sd=model.state_dict(), config={"params": params})


def tiny_pixel_vae() -> comfy.sd.VAE:
    """The host's pixel-space "VAE" (``PixelspaceConversionVAE``: IMAGE 0..1 <-> latent -1..1, no weights)."""
    return comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})


class MovieDreamerTestTinySD(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinySD",
            display_name="Tiny SD model (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: a tiny randomly initialised SD1.5-layout UNet and TAESD VAE in the host's own classes.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights."),
                    io.Boolean.Input("pixel_space", default=False, optional=True,
                                     tooltip="A UNet on RGB pixels with the host's pixel-space VAE, instead of TAESD latents."),
                    io.Boolean.Input("fast_at_large_sizes", default=False, optional=True,
                                     tooltip="Cross-attention only at the UNet's second level and a small SD-style VAE "
                                     "(32 channels) instead of TAESD: fast at 832x480.")],
            outputs=[io.Model.Output("model", display_name="MODEL", tooltip="The tiny diffusion model."),
                     io.Vae.Output("vae", display_name="VAE", tooltip="The tiny VAE.")],
        )

    @classmethod
    def execute(cls, seed=0, pixel_space=False, fast_at_large_sizes=False) -> io.NodeOutput:
        if pixel_space:
            return io.NodeOutput(tiny_sd(seed, pixel_space=True), tiny_pixel_vae())
        if fast_at_large_sizes:
            return io.NodeOutput(tiny_sd(seed, layout="sd15_low_attention"), tiny_small_vae(seed))
        return io.NodeOutput(tiny_sd(seed), tiny_vae(seed))


def tiny_svd(seed: int = 0, context_dim: int = 32):
    """A ``ModelPatcher`` around a real ``comfy.model_base.SVD_img2vid`` with a tiny video UNet (about 2 M
    parameters), built in-process (the loader's SVD detection needs a full-size model). ``context_dim`` matches
    the tiny CLIP Vision's projected embedding."""
    import comfy.supported_models

    cfg = dict(image_size=32, in_channels=8, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
               transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1,
               use_spatial_transformer=True, use_linear_in_transformer=True, context_dim=context_dim, legacy=False,
               use_checkpoint=False, adm_in_channels=768, num_classes="sequential", use_temporal_attention=True,
               use_temporal_resblock=True, extra_ff_mix_layer=True, use_spatial_context=True,
               merge_strategy="learned_with_images", merge_factor=0.0, video_kernel_size=[3, 1, 1],
               disable_temporal_crossattention=False, max_ddpm_temb_period=10000, dtype=torch.float32)
    config = comfy.supported_models.SVD_img2vid(cfg)
    config.unet_config["num_head_channels"] = 16
    model = config.get_model({})
    reinit_(model, seed)
    mm = comfy.model_management
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


class MovieDreamerTestTinySVD(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinySVD",
            display_name="Tiny SVD model (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: a tiny randomly initialised Stable Video Diffusion model in the host's own classes.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.Model.Output("model", display_name="MODEL", tooltip="The tiny SVD model.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        return io.NodeOutput(tiny_svd(seed))


def tiny_wan_state_dict(seed: int = 0, *, model_type: str = "i2v", in_dim: int = 36, out_dim: int = 16) -> dict:
    """Weights of a tiny Wan model (about 2.8 M parameters) in the layout the host's loader detects
    (``head.modulation``; ``img_emb`` for ``model_type`` i2v; width a multiple of 128)."""
    import comfy.ldm.wan.model
    import comfy.ops

    model = comfy.ldm.wan.model.WanModel(model_type=model_type, in_dim=in_dim, dim=128, ffn_dim=256, num_heads=1,
                                         num_layers=1, text_dim=4096, out_dim=out_dim,
                                         operations=comfy.ops.disable_weight_init)
    reinit_(model, seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def tiny_wan_i2v_state_dict(seed: int = 0) -> dict:
    """A tiny Wan 2.1 image-to-video model (36 input channels: the latent, the start image's and the mask's)."""
    return tiny_wan_state_dict(seed)


def tiny_wan22_ti2v_state_dict(seed: int = 0) -> dict:
    """A tiny Wan 2.2 TI2V (5B layout: 48 input and output channels, no image channels, no ``img_emb``), which the
    host's loader detects as ``WAN22_T2V`` (``model_base.WAN22``, image-to-video)."""
    return tiny_wan_state_dict(seed, model_type="t2v", in_dim=48, out_dim=48)


def _random_wan_vae(vae_class, dim: int, z_dim: int, seed: int) -> comfy.sd.VAE:
    vae = vae_class(dim=dim, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                    temperal_downsample=[False, True, True])
    reinit_(vae, seed, std=0.05)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return comfy.sd.VAE(sd=vae.state_dict())


def tiny_wan_vae(seed: int = 0) -> comfy.sd.VAE:
    """The host's Wan 2.1 VAE (its size is fixed: 127 M parameters) with random weights."""
    import comfy.ldm.wan.vae

    return _random_wan_vae(comfy.ldm.wan.vae.WanVAE, 96, 16, seed)


def tiny_wan22_vae(seed: int = 0) -> comfy.sd.VAE:
    """The host's Wan 2.2 VAE (48 latent channels, 16x spatial compression; its size is fixed) with random weights."""
    import comfy.ldm.wan.vae2_2

    return _random_wan_vae(comfy.ldm.wan.vae2_2.WanVAE, 160, 48, seed)


class MovieDreamerTestTinyWanExtras(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinyWanExtras",
            display_name="Tiny Wan VAE and conditioning (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: the host's Wan 2.1 VAE with random weights, and random Wan text conditioning.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.Vae.Output("vae", display_name="VAE", tooltip="The Wan VAE."),
                     io.Conditioning.Output("positive", display_name="positive", tooltip="Random text conditioning."),
                     io.Conditioning.Output("negative", display_name="negative", tooltip="Zero text conditioning.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        g = torch.Generator().manual_seed(seed)
        return io.NodeOutput(tiny_wan_vae(seed), [[torch.randn(1, 8, 4096, generator=g) * 0.1, {}]],
                             [[torch.zeros(1, 8, 4096), {}]])


class MovieDreamerTestTinyCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinyCLIP",
            display_name="Tiny CLIP (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: a tiny randomly initialised SD1.x text encoder in the host's own classes.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.Clip.Output("clip", display_name="CLIP", tooltip="The tiny text encoder.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        return io.NodeOutput(tiny_clip(seed))


class MovieDreamerTestTinyCLIPVision(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinyCLIPVision",
            display_name="Tiny CLIP Vision (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: a tiny randomly initialised CLIP vision model in the host's own classes.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.ClipVision.Output("clip_vision", display_name="CLIP_VISION", tooltip="The tiny vision model.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        return io.NodeOutput(tiny_clip_vision(seed))


def tiny_ltxv_state_dict(seed: int = 0) -> dict:
    """Weights of a tiny LTX-Video transformer (one block, 32 heads of width 2: the host's loader reads the head
    width from ``attn2.to_k`` over 32 heads) in the layout the host's loader detects (``adaln_single``)."""
    import comfy.ldm.lightricks.model
    import comfy.ops

    model = comfy.ldm.lightricks.model.LTXVModel(in_channels=128, cross_attention_dim=64, attention_head_dim=2,
                                                 num_attention_heads=32, caption_channels=4096, num_layers=1,
                                                 operations=comfy.ops.disable_weight_init)
    reinit_(model, seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


#: A tiny LTX-Video VAE with the real one's compression (32x spatial, 8x temporal, 128 latent channels): a
#: 4x4 patch and three compress-all stages without widening, in the config format the host's VAE reads.
TINY_LTXV_VAE = {"dims": 3, "latent_channels": 128, "patch_size": 4, "norm_layer": "pixel_norm",
                 "causal_decoder": False, "timestep_conditioning": False,
                 "blocks": [["compress_all", {"multiplier": 1}]] * 3,
                 "decoder_blocks": [["compress_all", {"multiplier": 1}]] * 3 + [["res_x", 1]]}


def tiny_ltxv_vae(seed: int = 0) -> comfy.sd.VAE:
    """The host's LTX-Video VAE class (``CausalVideoAutoencoder``), tiny, random weights, loaded from a state
    dict and its config the way the host loads a VAE file with metadata."""
    import comfy.ldm.lightricks.vae.causal_video_autoencoder as cva

    vae = cva.VideoVAE(config=TINY_LTXV_VAE)
    reinit_(vae, seed, std=0.05)
    return comfy.sd.VAE(sd=vae.state_dict(), metadata={"config": json.dumps({"vae": TINY_LTXV_VAE})})


class MovieDreamerTestTinyLTXVExtras(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinyLTXVExtras",
            display_name="Tiny LTX-Video VAE and conditioning (MovieDreamer tests)",
            category=wire_types.CATEGORY + "/testing",
            description="Test only: a tiny LTX-Video VAE with random weights, and random T5-shaped text conditioning "
            "with its attention mask (as the host's T5 encoder gives it).",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.Vae.Output("vae", display_name="VAE", tooltip="The LTX-Video VAE."),
                     io.Conditioning.Output("positive", display_name="positive", tooltip="Random text conditioning."),
                     io.Conditioning.Output("negative", display_name="negative", tooltip="Zero text conditioning.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        g = torch.Generator().manual_seed(seed)
        mask = torch.ones(1, 8, dtype=torch.long)
        return io.NodeOutput(tiny_ltxv_vae(seed), [[torch.randn(1, 8, 4096, generator=g) * 0.1, {"attention_mask": mask}]],
                             [[torch.zeros(1, 8, 4096), {"attention_mask": mask}]])


TEST_NODES = [MovieDreamerTestTinyCLIP, MovieDreamerTestTinyCLIPVision, MovieDreamerTestTinySD, MovieDreamerTestTinyWanExtras,
              MovieDreamerTestTinySVD, MovieDreamerTestTinyLTXVExtras]


def enabled() -> bool:
    return os.environ.get(ENV_FLAG) == "1"


# ------------------------------------------------------------------------- files the host's loaders accept


def write_sd15_checkpoint(path: str, seed: int = 0) -> str:
    """A checkpoint file that ``CheckpointLoaderSimple`` / ``comfy.sd.load_checkpoint_guess_config`` detects as
    SD1.5, as small as detection allows (HOST_NOTES): the UNet keeps SD1.5's 320 channels and 768-wide context but
    has one level with one residual block (about 19 M parameters); the text encoder is a full-size CLIP-L (its
    loader accepts no other); the VAE is a TAESD inside the file. Random weights, fp16 on disk (about 290 MB);
    written in seconds, never committed."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    from safetensors.torch import save_file

    unet = openaimodel.UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
                                 channel_mult=[1], transformer_depth=[1], transformer_depth_output=[1, 1],
                                 transformer_depth_middle=1, use_spatial_transformer=True, use_linear_in_transformer=False,
                                 context_dim=768, num_heads=8, num_head_channels=-1, legacy=False, adm_in_channels=None,
                                 dtype=torch.float32, operations=comfy.ops.disable_weight_init, device="cpu")
    reinit_(unet, seed)
    text = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32)
    reinit_(text, seed + 1)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    reinit_(taesd, seed + 2, std=0.08)
    state = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"cond_stage_model.{k[len('clip_l.'):]}": v for k, v in text.state_dict().items() if k.startswith("clip_l.")})
    state.update({f"first_stage_model.{k}": v for k, v in taesd.state_dict().items()})
    save_file({k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in state.items()}, path)
    return path


def write_clip_vision_vitl(path: str, seed: int = 0) -> str:
    """A CLIP Vision file that ``CLIPVisionLoader`` / ``comfy.clip_vision.load`` detects as ViT-L/14 (its loader
    accepts only real sizes: 303 M parameters, fp16 on disk, about 600 MB). Random weights."""
    from safetensors.torch import save_file

    config = os.path.join(os.path.dirname(comfy.clip_vision.__file__), "clip_vision_config_vitl.json")
    model = comfy.clip_vision.ClipVisionModel(config)
    reinit_(model.model, seed)
    save_file({k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.model.state_dict().items()}, path)
    return path
