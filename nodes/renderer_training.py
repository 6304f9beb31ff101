"""The frozen host UNet as the denoiser that ``moviedreamer_core.renderer.train`` trains the adapter against.

The adapter is patched into the UNet's cross-attention exactly as at render time (``attention_patch``), and the
prediction is the host sampler's own (``host.conditional_prediction``: the host turns the text conditioning into
the model's inputs, SDXL's pooled-text-and-size ADM vector included, and runs its ``calc_cond_batch``), so what
trains is what renders. The latents it receives are in the model's own scale (``training_latents``: the VAE's
latents through the model's ``process_latent_in``, as the sampler does with a LATENT). Gradients flow into the
adapter only: the UNet's parameters are frozen.
"""

from __future__ import annotations

import torch

from . import host
from .attention_patch import AdapterState, discover_cross_attention, patch_model


def training_latents(model, vae_latents: torch.Tensor) -> torch.Tensor:
    """A VAE's latents (a LATENT's ``samples``) in the scale the MODEL denoises: the host's sampler applies the
    model's latent format (``process_latent_in``: x0.18215 for SD1.5, x0.13025 for SDXL) before adding noise, so
    training must too, or it trains at another scale than it renders (5.5x for SD1.5)."""
    return model.model.process_latent_in(vae_latents)


def make_denoiser(model, adapter_patcher, train_base: bool = False):
    """``denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx, pooled=None) -> predicted clean latents`` on a
    host MODEL; ``noisy`` in the model's latent scale (``training_latents``), ``pooled`` ``[B, P]`` the text
    encoder's pooled output (SDXL-family models read it, with the image size, through their ADM input).

    ``train_base``: the UNet trains too (the toy cinema, which has no pretrained base); otherwise it is frozen."""
    layers = discover_cross_attention(model)
    model.model.requires_grad_(train_base)

    def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx, pooled=None):
        state = AdapterState(adapter_patcher, layers, token_ctx, torch.zeros_like(token_ctx[:1]), identity_ctx,
                             1.0, 1.0 if identity_ctx is not None else 0.0, float("inf"), 0.0)
        patched = patch_model(model, state)
        extras = {"pooled_output": pooled} if pooled is not None else {}
        return host.conditional_prediction(patched, noisy, sigmas, [[text_ctx, extras]])

    return denoise
