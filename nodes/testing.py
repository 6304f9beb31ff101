"""Tiny, randomly initialised host models for tests and CPU demos, and test-only nodes that hand them out.

The host's loader nodes accept only real-size architectures, and the machine that runs our tests has no
weights to load. These builders make the host's *own* classes (``comfy.sd.CLIP`` around an SD1.x CLIP text
model, ``comfy.clip_vision.ClipVisionModel``) at a tiny size, so tests exercise the real host code paths.

Host modules are built with weight initialisation disabled (their parameters are uninitialised memory):
every parameter is re-initialised here (normal 0.02, zero bias, unit norm scale) from a seeded generator and
checked finite.

The nodes are registered only when the environment variable ``MOVIEDREAMER_TEST_NODES=1`` is set (the test
harness sets it), so users never see them.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
from comfy_api.latest import io

from . import types

ENV_FLAG = "MOVIEDREAMER_TEST_NODES"

TINY_CLIP_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 64}
TINY_CLIP_VISION = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 64, "image_size": 32,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 128, "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 2,
    "patch_size": 8, "projection_dim": 32, "torch_dtype": "float32",
}


def reinit_(module: torch.nn.Module, seed: int) -> None:
    """Deterministic re-initialisation of every parameter; raises if anything is not finite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.02)
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
    reinit_(model.model, seed)
    return model


class MovieDreamerTestTinyCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTestTinyCLIP",
            display_name="Tiny CLIP (MovieDreamer tests)",
            category=types.CATEGORY + "/testing",
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
            category=types.CATEGORY + "/testing",
            description="Test only: a tiny randomly initialised CLIP vision model in the host's own classes.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the random weights.")],
            outputs=[io.ClipVision.Output("clip_vision", display_name="CLIP_VISION", tooltip="The tiny vision model.")],
        )

    @classmethod
    def execute(cls, seed=0) -> io.NodeOutput:
        return io.NodeOutput(tiny_clip_vision(seed))


TEST_NODES = [MovieDreamerTestTinyCLIP, MovieDreamerTestTinyCLIPVision]


def enabled() -> bool:
    return os.environ.get(ENV_FLAG) == "1"
