"""Tiny, randomly initialised models in the host's own classes, for tests (no downloads, CPU, seconds).

One copy of the builders exists: ``tests/host/tiny_nodes.py``, imported through the pack, because the test-only loader nodes
(``MovieDreamerTestTiny*``, registered when ``MOVIEDREAMER_TEST_NODES=1``) must hand the same models to a
server. That module imports the host (``comfy.*``), so it can only be imported once the host is loaded; the
functions here fetch it from the pack as the host loaded it. Request the ``host`` fixture first::

    def test_something(host):
        clip = tiny_models.tiny_clip(seed=0)              # comfy.sd.CLIP, SD1.x layout, pooled [1, 64]
        cond, pooled = clip.encode_from_tokens(clip.tokenize("a fox"), return_pooled=True)
        vision = tiny_models.tiny_clip_vision(seed=0)    # comfy.clip_vision.ClipVisionModel, image_embeds [B, 32]
        model = tiny_models.tiny_sd_model(seed=0)        # ModelPatcher around comfy.model_base.BaseModel, context 64
        vae = tiny_models.tiny_vae(seed=0)               # comfy.sd.VAE around a TAESD

Every builder re-initialises every parameter from a seeded generator (weights normal, biases zero, norm
scales one: the host builds its modules with weight initialisation disabled) and checks finiteness, so a
seed gives the same model every time.
"""

from __future__ import annotations

import importlib
import sys

import torch

from .harness import pack_module_name

TEXT_DIM = 64  # hidden size and pooled (projected) size of tiny_clip; the tiny UNet's context_dim
VISION_EMBED_DIM = 32  # tiny_clip_vision's projected image_embeds
VISION_HIDDEN_DIM = 64  # tiny_clip_vision's hidden states (penultimate_hidden_states, last_hidden_state)
VISION_IMAGE_SIZE = 32  # tiny_clip_vision resizes and crops every image to this square


def builders():
    """The pack's ``tests/host/tiny_nodes.py`` as the host loaded it."""
    if pack_module_name() not in sys.modules:
        raise RuntimeError("the pack is not loaded: request the `host` fixture before building tiny models")
    return importlib.import_module(f"{pack_module_name()}.tests.host.tiny_nodes")


def tiny_clip(seed: int = 0):
    """``comfy.sd.CLIP`` around the host's ``SD1ClipModel`` (2 layers, 2 heads, width 64, the real tokenizer)."""
    return builders().tiny_clip(seed)


def tiny_clip_vision(seed: int = 0):
    """``comfy.clip_vision.ClipVisionModel`` from a small config (32x32 input, 2 layers, width 64, 32-D embeds)."""
    return builders().tiny_clip_vision(seed)


def tiny_sd_model(seed: int = 0, layout: str = "sd15"):
    """``ModelPatcher`` around ``comfy.model_base.BaseModel`` with a tiny UNet (``layout`` "sd15" or "sdxl"),
    context_dim 64, SD1.5 latent format (4 channels)."""
    return builders().tiny_sd(seed, layout=layout)


def tiny_sdxl_model(seed: int = 0):
    """``ModelPatcher`` around ``comfy.model_base.SDXL`` (SDXL layout, latent format and ADM from the pooled text of
    ``tiny_clip`` plus the image-size embeddings)."""
    return builders().tiny_sdxl(seed)


def tiny_vae(seed: int = 0):
    """``comfy.sd.VAE`` around a randomly initialised TAESD (4 latent channels, 8x down-scaling)."""
    return builders().tiny_vae(seed)


def tiny_svd(seed: int = 0, context_dim: int = VISION_EMBED_DIM):
    """``ModelPatcher`` around ``comfy.model_base.SVD_img2vid`` with a tiny video UNet."""
    return builders().tiny_svd(seed, context_dim=context_dim)


def reinit_(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Re-initialise every parameter of a host module deterministically (see ``tests/host/tiny_nodes.py``)."""
    builders().reinit_(module, seed, std=std)


def assert_finite(module: torch.nn.Module) -> None:
    """Every floating parameter and buffer is finite (names the first that is not)."""
    for kind, items in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in items:
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise AssertionError(f"{kind} {name} is not finite")
