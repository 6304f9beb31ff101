"""Plain and plus IP-Adapter files checked against the published files' layout, without a host.

The key names and shapes below are written from the public reference, not from the pack's inverse mapping
(``ipadapter_state_from_adapter``): tencent-ailab/IP-Adapter (commit 62e4af9) ``ip_adapter/ip_adapter.py``
(``ImageProjModel``: ``proj = Linear(clip_embeddings_dim, tokens * cross_attention_dim)``, ``norm = LayerNorm(cross)``;
``IPAdapterPlus``/``IPAdapterPlusXL.init_proj``: the ``Resampler`` arguments; ``load_ip_adapter``: the file holds
``image_proj.*`` and ``ip_adapter.*``, the latter numbered over ``unet.attn_processors``, self- and cross-attention
alternating, so the cross-attention slots are the odd numbers), ``ip_adapter/resampler.py`` (the ``Resampler``'s
parameters), ``ip_adapter/attention_processor.py`` (``IPAttnProcessor.to_k_ip/to_v_ip = Linear(cross, hidden,
bias=False)``). The processors are in diffusers' order (down blocks, up blocks, middle block) with the hidden size of
their block (``set_ip_adapter``). Full-size layouts are checked on the meta device (names and shapes, no memory);
small files in the same layout with random values are checked against the reference's forward written out on the
raw keys, so a wrong key mapping or a wrong formula fails.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from moviedreamer_core.renderer import adapter_from_ipadapter, load_renderer, read_renderer_config

#: Cross-attention widths (``hidden_size``) of the SD1.5 UNet in processor order: down blocks 0-2 (block_out_channels
#: 320, 640, 1280; two transformers each), up blocks 1-3 (1280, 640, 320; three each), the middle block (1280).
SD15_CROSS_ATTENTION = [320, 320, 640, 640, 1280, 1280] + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]
#: SDXL: down block 1 (640: two transformers of depth 2), down block 2 (1280: two of depth 10), up block 0 (1280: three
#: of depth 10), up block 1 (640: three of depth 2), the middle block (1280, depth 10); block 0 has no attention.
SDXL_CROSS_ATTENTION = [640] * 4 + [1280] * 20 + [1280] * 30 + [640] * 6 + [1280] * 10


def image_proj_model(cross: int, clip_dim: int, tokens: int) -> dict:
    """``ImageProjModel(cross_attention_dim, clip_embeddings_dim, clip_extra_context_tokens)``'s parameters."""
    return {"image_proj.proj.weight": (tokens * cross, clip_dim), "image_proj.proj.bias": (tokens * cross,),
            "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)}


def resampler(dim: int, depth: int, dim_head: int, heads: int, num_queries: int, embedding_dim: int, output_dim: int,
              ff_mult: int) -> dict:
    """``Resampler(...)``'s parameters (``apply_pos_emb=False``, no mean-pooled latents, as IP-Adapter builds it)."""
    inner, p = dim_head * heads, "image_proj."
    out = {p + "latents": (1, num_queries, dim), p + "proj_in.weight": (dim, embedding_dim), p + "proj_in.bias": (dim,),
           p + "proj_out.weight": (output_dim, dim), p + "proj_out.bias": (output_dim,),
           p + "norm_out.weight": (output_dim,), p + "norm_out.bias": (output_dim,)}
    for i in range(depth):
        q = f"{p}layers.{i}."
        out.update({q + "0.norm1.weight": (dim,), q + "0.norm1.bias": (dim,), q + "0.norm2.weight": (dim,),
                    q + "0.norm2.bias": (dim,), q + "0.to_q.weight": (inner, dim), q + "0.to_kv.weight": (2 * inner, dim),
                    q + "0.to_out.weight": (dim, inner), q + "1.0.weight": (dim,), q + "1.0.bias": (dim,),
                    q + "1.1.weight": (dim * ff_mult, dim), q + "1.3.weight": (dim, dim * ff_mult)})
    return out


def ip_layers(cross: int, hidden: list[int]) -> dict:
    """``IPAttnProcessor`` weights at the cross-attention slots (odd processor numbers)."""
    out = {}
    for layer, h in enumerate(hidden):
        out[f"ip_adapter.{2 * layer + 1}.to_k_ip.weight"] = (h, cross)
        out[f"ip_adapter.{2 * layer + 1}.to_v_ip.weight"] = (h, cross)
    return out


#: file -> (published layout, token space, context width, context tokens, resampler arguments or None)
PUBLISHED = {
    "ip-adapter_sd15.safetensors": (  # ViT-H image encoder: projection_dim 1024; num_tokens 4
        {**image_proj_model(768, 1024, 4), **ip_layers(768, SD15_CROSS_ATTENTION)},
        ("clip_vision.image_embeds", 1, 1024), 768, 4, None),
    "ip-adapter-plus_sd15.safetensors": (  # IPAdapterPlus: Resampler(768, 4, 64, 12, 16, hidden_size 1280, 768, 4)
        {**resampler(768, 4, 64, 12, 16, 1280, 768, 4), **ip_layers(768, SD15_CROSS_ATTENTION)},
        ("clip_vision.penultimate_hidden_states", 0, 1280), 768, 16,
        dict(dim=768, depth=4, dim_head=64, heads=12, num_queries=16, embedding_dim=1280, output_dim=768, ff_mult=4)),
    "ip-adapter_sdxl_vit-h.safetensors": (
        {**image_proj_model(2048, 1024, 4), **ip_layers(2048, SDXL_CROSS_ATTENTION)},
        ("clip_vision.image_embeds", 1, 1024), 2048, 4, None),
    "ip-adapter_sdxl.safetensors": (  # ViT-bigG image encoder: projection_dim 1280
        {**image_proj_model(2048, 1280, 4), **ip_layers(2048, SDXL_CROSS_ATTENTION)},
        ("clip_vision.image_embeds", 1, 1280), 2048, 4, None),
    "ip-adapter-plus_sdxl_vit-h.safetensors": (  # IPAdapterPlusXL: Resampler(1280, 4, 64, 20, 16, 1280, 2048, 4)
        {**resampler(1280, 4, 64, 20, 16, 1280, 2048, 4), **ip_layers(2048, SDXL_CROSS_ATTENTION)},
        ("clip_vision.penultimate_hidden_states", 0, 1280), 2048, 16,
        dict(dim=1280, depth=4, dim_head=64, heads=20, num_queries=16, embedding_dim=1280, output_dim=2048, ff_mult=4)),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_layouts_load_with_every_key_in_its_place(name):
    """Every published key is read at its published shape (the load is strict, and the adapter holds exactly as many
    values as the file), and the renderer declares the file's token space, widths and layer order."""
    layout, (source, K, D), context, tokens, shape = PUBLISHED[name]
    with torch.device("meta"):
        adapter = adapter_from_ipadapter({k: torch.empty(s) for k, s in layout.items()}, name)
    cfg = adapter.cfg
    assert (cfg.token_space["source"], cfg.token_space["K"], cfg.token_space["D"]) == (source, K, D)
    assert cfg.context_dim == context and cfg.context_tokens == tokens and cfg.resampler == shape
    hidden = SD15_CROSS_ATTENTION if "sd15" in name else SDXL_CROSS_ATTENTION
    assert cfg.layer_dims == hidden, "layer i is the i-th cross-attention slot, in diffusers' processor order"
    assert cfg.source == ("ipadapter-plus" if shape else "ipadapter") and cfg.identity is None
    assert sum(p.numel() for p in adapter.parameters()) == sum(math.prod(s) for s in layout.values())


# ------------------------------------------------------------------- small files: the reference's forward


C, D_CLIP, N, E = 32, 16, 4, 24  # context width, pooled embedding width, tokens, hidden-state width
HIDDEN = [24, 48, 24]
PLUS = dict(dim=32, depth=2, dim_head=64, heads=2, num_queries=4, embedding_dim=E, output_dim=C, ff_mult=4)


def random_file(layout: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (1 + 0.1 * torch.randn(s, generator=g)) if k.endswith(("norm.weight", "norm1.weight", "norm2.weight",
                                                                      "norm_out.weight", "1.0.weight"))
            else torch.randn(s, generator=g) * 0.3 for k, s in layout.items()}


def reference_image_proj(s: dict, embeds: torch.Tensor) -> torch.Tensor:
    """ImageProjModel.forward on the raw keys."""
    x = F.linear(embeds, s["image_proj.proj.weight"], s["image_proj.proj.bias"]).reshape(-1, N, C)
    return F.layer_norm(x, (C,), s["image_proj.norm.weight"], s["image_proj.norm.bias"])


def reference_resampler(s: dict, x: torch.Tensor) -> torch.Tensor:
    """Resampler.forward (and PerceiverAttention, FeedForward) on the raw keys."""
    p = lambda k: s["image_proj." + k]  # noqa: E731
    dim, heads, dim_head = PLUS["dim"], PLUS["heads"], PLUS["dim_head"]
    latents = p("latents").repeat(x.shape[0], 1, 1)
    x = F.linear(x, p("proj_in.weight"), p("proj_in.bias"))
    for i in range(PLUS["depth"]):
        w = lambda k: p(f"layers.{i}.{k}")  # noqa: E731
        xn = F.layer_norm(x, (dim,), w("0.norm1.weight"), w("0.norm1.bias"))
        ln = F.layer_norm(latents, (dim,), w("0.norm2.weight"), w("0.norm2.bias"))
        q = F.linear(ln, w("0.to_q.weight"))
        k, v = F.linear(torch.cat((xn, ln), dim=-2), w("0.to_kv.weight")).chunk(2, dim=-1)
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        scale = 1 / math.sqrt(math.sqrt(dim_head))
        weight = torch.softmax((split(q) * scale) @ (split(k) * scale).transpose(-2, -1), dim=-1)
        out = (weight @ split(v)).permute(0, 2, 1, 3).reshape(latents.shape[0], latents.shape[1], -1)
        latents = F.linear(out, w("0.to_out.weight")) + latents
        ff = F.layer_norm(latents, (dim,), w("1.0.weight"), w("1.0.bias"))
        latents = F.linear(F.gelu(F.linear(ff, w("1.1.weight"))), w("1.3.weight")) + latents
    out = F.linear(latents, p("proj_out.weight"), p("proj_out.bias"))
    return F.layer_norm(out, (C,), p("norm_out.weight"), p("norm_out.bias"))


@pytest.mark.parametrize("plus", [False, True])
def test_small_files_in_the_published_layout_compute_the_references_forward(tmp_path, plus):
    name = "ip-adapter-plus_sd15.safetensors" if plus else "ip-adapter_sd15.safetensors"
    proj = resampler(**PLUS) if plus else image_proj_model(C, D_CLIP, N)
    state = random_file({**proj, **ip_layers(C, HIDDEN)})
    save_file(state, str(tmp_path / name))
    assert read_renderer_config(str(tmp_path / name)) is None  # a public file, converted on the fly
    a = load_renderer(str(tmp_path / name))
    assert a.cfg.layer_dims == HIDDEN and a.cfg.context_dim == C and a.cfg.context_tokens == N
    features = torch.randn(2, 9, E) if plus else torch.randn(2, D_CLIP)  # 9 patch features (257 for ViT-H at 224 px)
    with torch.no_grad():
        got = a.project_tokens(features if plus else features[:, None])
        expected = reference_resampler(state, features) if plus else reference_image_proj(state, features)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        for layer in range(len(HIDDEN)):  # the adapter's layer i is the file's cross-attention slot 2i+1
            k, v = a.layer_kv(layer, got)
            torch.testing.assert_close(k, got @ state[f"ip_adapter.{2 * layer + 1}.to_k_ip.weight"].T)
            torch.testing.assert_close(v, got @ state[f"ip_adapter.{2 * layer + 1}.to_v_ip.weight"].T)
