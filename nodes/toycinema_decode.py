"""Decoding many toy keyframes at once: tokens (and identities) to images through the host's sampler.

The render node draws one keyframe at a time because real keyframes are large and each is saved as soon as it
is done. Scoring the toy models needs hundreds of 32x32 keyframes, so this draws them in batches with the same
pieces the node uses: the adapter patched into the host MODEL (``attention_patch``), the host's noise and
samplers (``host.sample_latent``), the VAE's decode. Rows of one batch share their number of identities
(``n`` characters on screen give ``n * M`` identity tokens), as in training.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from . import host
from .attention_patch import AdapterState, discover_cross_attention, patch_model


@torch.no_grad()
def decode_tokens(model, vae, adapter_patcher, tokens: torch.Tensor, identities: Optional[Sequence] = None, *,
                  positive, negative, seed: int = 0, steps: int = 20, cfg: float = 2.0, sampler_name: str = "euler",
                  scheduler: str = "normal", size: int = 32, token_weight: float = 1.0, identity_weight: float = 1.0,
                  batch_size: int = 64) -> np.ndarray:
    """``uint8 [N, size, size, 3]``: keyframe ``i`` drawn from ``tokens[i]`` ``[K, D]`` and ``identities[i]``
    (``[n_i, Di]``, ``n_i`` may be 0, or ``None`` for every row: no identity path)."""
    n = tokens.shape[0]
    adapter = host.load_managed(adapter_patcher)
    layers = discover_cross_attention(model)
    use_ids = identities is not None and adapter.identity_proj is not None and identity_weight != 0
    groups: dict[int, list] = {}
    for i in range(n):
        groups.setdefault(int(identities[i].shape[0]) if use_ids else 0, []).append(i)
    out = np.zeros((n, size, size, 3), np.uint8)
    uncond = adapter.project_tokens(torch.zeros(1, *tokens.shape[1:]))
    for count, rows in sorted(groups.items()):
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            cond = adapter.project_tokens(tokens[part])
            id_ctx = None
            if count or (use_ids and adapter.has_empty_slots):  # nobody on screen still says so with "empty" places
                ids = torch.stack([torch.as_tensor(identities[i]).float() for i in part])  # [B, n, Di]
                id_ctx = adapter.identity_context(ids, tokens=tokens[part])
            state = AdapterState(adapter_patcher, layers, cond, uncond, id_ctx, token_weight,
                                 identity_weight if id_ctx is not None else 0.0, float("inf"), 0.0)
            latent = host.empty_latent(model, size, size, batch=len(part), downscale=1)
            sampled = host.sample_latent(patch_model(model, state), seed + start + 7919 * count, steps, cfg, sampler_name,
                                         scheduler, positive, negative, latent)
            images = vae.decode(sampled).float().clamp(0, 1)
            out[part] = (images * 255).round().to(torch.uint8).cpu().numpy()
    return out
