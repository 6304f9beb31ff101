"""Patching a host MODEL's cross-attention with the renderer adapter (decoupled cross-attention).

Which layers exist, and under which keys the host looks them up, depends on the UNet (SD1.5, SDXL, their
fine-tunes) and on the host version; hard-coded block tables break silently (the middle block's key is
``("middle", 0)`` here, some public code uses 1). So the layers are *discovered*: one forward pass of the
UNet on a tiny input with a recording ``attn2_patch`` lists every cross-attention layer's key
``(block, number, transformer_index)`` and width. The adapter's layer order is diffusers' (down blocks, up
blocks, middle block), the order IP-Adapter files number their layers in.

Each patched layer returns ``attn(q, k, v) + w_tok * attn(q, K_tok, V_tok) + w_id * attn(q, K_id, V_id)``,
where the first term is exactly what the layer computed without the patch, and the adapter terms are on only
within the configured part of the denoising range. Batch entries line up with keyframes through the host's
``cond_or_uncond`` order: conditional chunks read the keyframes' tokens and identities, unconditional chunks
read the projection of zero tokens and no identity (as IP-Adapter does). A renderer with ``identity_positions``
(``token_positions``) adds its place term to the identity (token) attention's queries (``q + P(place)``), the grid
read from the host's ``activations_shape``; the token term applies to conditional and unconditional chunks alike,
as in training.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

import torch

from comfy.ldm.modules.attention import optimized_attention

from . import host

STAGE_ORDER = {"input": 0, "output": 1, "middle": 2}
_DISCOVERED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class CrossAttentionLayer:
    key: tuple  # (block name, block number, transformer index): the host's attn2 replace key
    inner_dim: int  # heads * dim_head
    context_dim: int


def discover_cross_attention(model) -> list[CrossAttentionLayer]:
    """Every cross-attention layer of a host MODEL (a ModelPatcher), in adapter (diffusers) order."""
    diffusion = model.model.diffusion_model
    if diffusion in _DISCOVERED:
        return _DISCOVERED[diffusion]
    seen: dict = {}

    def record(n, context, value, extra):
        block = extra.get("block")
        if block is not None:
            key = (block[0], block[1], extra.get("block_index", 0))
            seen.setdefault(key, CrossAttentionLayer(key, int(extra["n_heads"] * extra["dim_head"]), int(context.shape[-1])))
        return n, context, value

    base = model.model
    host.load_managed(model)
    device = host.torch_device()
    unet_cfg = base.model_config.unet_config
    channels = getattr(diffusion, "in_channels", 4)
    context_dim = unet_cfg.get("context_dim") or 768
    x = torch.zeros(1, channels, 16, 16, device=device, dtype=torch.float32)
    kwargs = {}
    if getattr(base, "adm_channels", 0):
        kwargs["y"] = torch.zeros(1, base.adm_channels, device=device)
    with torch.no_grad():
        base.apply_model(x, torch.ones(1, device=device), c_crossattn=torch.zeros(1, 77, context_dim, device=device),
                         transformer_options={"patches": {"attn2_patch": [record]}}, **kwargs)
    if not seen:
        raise ValueError("this MODEL has no cross-attention layers that can be patched (is it a UNet of the SD family?)")
    layers = sorted(seen.values(), key=lambda l: (STAGE_ORDER.get(l.key[0], 3), l.key[1], l.key[2]))
    _DISCOVERED[diffusion] = layers
    return layers


class AdapterState:
    """What every patched layer of one render shares: the adapter, the per-keyframe contexts, the controls.

    ``cond_tokens``/``identity_tokens`` are ``[B, N, C]`` / ``[B, M, C]`` for the B keyframes in the batch;
    ``uncond_tokens`` is the projection of zero tokens. ``sigma_start >= sigma >= sigma_end`` gates the adapter.
    """

    def __init__(self, adapter_patcher, layers: list[CrossAttentionLayer], cond_tokens: torch.Tensor,
                 uncond_tokens: torch.Tensor, identity_tokens: Optional[torch.Tensor], token_weight: float,
                 identity_weight: float, sigma_start: float, sigma_end: float):
        self.adapter_patcher = adapter_patcher
        self.layers = layers
        self.cond_tokens, self.uncond_tokens, self.identity_tokens = cond_tokens, uncond_tokens, identity_tokens
        self.token_weight, self.identity_weight = float(token_weight), float(identity_weight)
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)

    def active(self, extra: dict) -> bool:
        sigmas = extra.get("sigmas")
        if sigmas is None:
            return True
        s = float(sigmas.detach().flatten()[0])
        return self.sigma_end <= s <= self.sigma_start


class AdapterAttention:
    """The ``attn2`` replacement for one layer. Deep copies return the same object: the host clones
    ``model_options`` with every ModelPatcher clone, which must not duplicate adapter weights."""

    def __init__(self, state: AdapterState, layer: int, inner=None):
        #: ``inner``: the ``attn2`` replacement the MODEL already had at this layer (another IP-Adapter-style node of
        #: the user's graph): it computes the layer's own attention here, so what it adds is kept, not dropped.
        self.state, self.layer, self.inner = state, layer, inner

    def __deepcopy__(self, memo):
        return self

    def models(self):
        inner = self.inner.models() if callable(getattr(self.inner, "models", None)) else []
        return [self.state.adapter_patcher, *inner]

    def _context(self, chunk_kinds: list, batch: int, which: str) -> Optional[torch.Tensor]:
        st = self.state
        per_chunk = batch // len(chunk_kinds)
        parts = []
        for kind in chunk_kinds:
            if which == "tokens":
                src = st.cond_tokens if kind == 0 else st.uncond_tokens.expand(st.cond_tokens.shape[0], -1, -1)
            else:
                if kind != 0:
                    return None  # identity only on the conditional chunks (see __call__)
                src = st.identity_tokens
            if src.shape[0] != per_chunk:
                src = src.repeat_interleave(max(per_chunk // src.shape[0], 1), dim=0)[:per_chunk]
            parts.append(src)
        return torch.cat(parts)

    def _query_offset(self, adapter, extra, n_queries: int, which: str = "identity") -> Optional[torch.Tensor]:
        """The renderer's place term for the identity (``identity_positions``) or token (``token_positions``)
        queries, on the grid of the transformer block this layer sits in (the host's ``activations_shape``); ``None``
        when the renderer has none or the queries are not that grid (then the attention runs without it)."""
        shape = extra.get("activations_shape")
        if not shape or len(shape) != 4 or shape[-2] * shape[-1] != n_queries:
            return None
        h, w = int(shape[-2]), int(shape[-1])
        if which == "tokens":
            return adapter.token_query_offset(self.layer, h, w)
        return adapter.identity_query_offset(self.layer, h, w)

    def __call__(self, q, k, v, extra):
        heads = extra["n_heads"]
        if self.inner is not None:
            out = self.inner(q, k, v, extra)
        else:
            out = optimized_attention(q, k, v, heads, attn_precision=extra.get("attn_precision"), transformer_options=extra)
        st = self.state
        if not st.active(extra) or (st.token_weight == 0 and st.identity_weight == 0):
            return out
        adapter = st.adapter_patcher.model
        kinds = list(extra.get("cond_or_uncond") or [0])
        batch = q.shape[0]
        if st.token_weight != 0:
            ctx = self._context(kinds, batch, "tokens").to(q.device, q.dtype)
            tk, tv = adapter.layer_kv(self.layer, ctx.to(next(adapter.parameters()).dtype))
            offset = self._query_offset(adapter, extra, q.shape[1], "tokens")
            qt = q if offset is None else q + offset.to(q.device, q.dtype)
            out = out + st.token_weight * optimized_attention(qt, tk.to(q.dtype), tv.to(q.dtype), heads,
                                                              attn_precision=extra.get("attn_precision"))
        if st.identity_weight != 0 and st.identity_tokens is not None and adapter.identity_kv is not None:
            per_chunk = batch // len(kinds)
            offset = self._query_offset(adapter, extra, q.shape[1])  # the same grid for every chunk
            if offset is not None:
                offset = offset.to(q.device, q.dtype)
            for c, kind in enumerate(kinds):
                if kind != 0:
                    continue
                sl = slice(c * per_chunk, (c + 1) * per_chunk)
                ctx = st.identity_tokens
                if ctx.shape[0] != per_chunk:
                    ctx = ctx.repeat_interleave(max(per_chunk // ctx.shape[0], 1), dim=0)[:per_chunk]
                ik, iv = adapter.layer_kv(self.layer, ctx.to(q.device, next(adapter.parameters()).dtype), identity=True)
                qi = q[sl] if offset is None else q[sl] + offset
                out[sl] = out[sl] + st.identity_weight * optimized_attention(qi, ik.to(q.dtype), iv.to(q.dtype), heads,
                                                                              attn_precision=extra.get("attn_precision"))
        return out


def patch_model(model, state: AdapterState):
    """A clone of the host MODEL with every discovered cross-attention layer patched exactly once.

    A layer that already has an ``attn2`` replacement (IP-Adapter Plus and packs like it put one on every layer)
    keeps it, inside the adapter's: the host looks a layer up by ``(block, number, index)`` first and then by
    ``(block, number)``, and so is the replacement found here. Before, the adapter's took its place and the
    user's IP-Adapter did nothing, without a word (an audit)."""
    patched = model.clone()
    existing = patched.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for i, layer in enumerate(state.layers):
        block, number, index = layer.key
        inner = existing.get((block, number, index), existing.get((block, number)))
        patched.set_model_attn2_replace(AdapterAttention(state, i, inner=inner), block, number, index)
    return patched
