"""The frozen host UNet as the denoiser that ``moviedreamer_core.renderer.train`` trains the adapter against.

The adapter is patched into the UNet's cross-attention exactly as at render time (``attention_patch``), so
what trains is what renders. Gradients flow into the adapter only: the UNet's parameters are frozen.
"""

from __future__ import annotations

import torch

from .attention_patch import AdapterState, discover_cross_attention, patch_model


def make_denoiser(model, adapter_patcher, train_base: bool = False):
    """``denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx) -> predicted clean latents`` on a host MODEL.

    ``train_base``: the UNet trains too (the toy cinema, which has no pretrained base); otherwise it is frozen."""
    layers = discover_cross_attention(model)
    base = model.model
    base.requires_grad_(train_base)

    def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        state = AdapterState(adapter_patcher, layers, token_ctx, torch.zeros_like(token_ctx[:1]), identity_ctx,
                             1.0, 1.0 if identity_ctx is not None else 0.0, float("inf"), 0.0)
        patched = patch_model(model, state)
        kwargs = {"y": torch.zeros(noisy.shape[0], base.adm_channels, device=noisy.device)} if base.adm_channels else {}
        return base.apply_model(noisy, sigmas, c_crossattn=text_ctx,
                                transformer_options=patched.model_options["transformer_options"], **kwargs)

    return denoise
