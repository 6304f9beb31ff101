"""A perceiver resampler: many visual features -> a fixed number of context tokens.

The token space built on CLIP Vision's *penultimate hidden states* (all patch features, e.g. 257 x 1280 for a
ViT-H at 224 px) keeps far more of a keyframe than the single pooled embedding; a learned resampler turns
them into a few context tokens for the UNet (the ``clip_vision.penultimate_hidden_states`` token space of
``moviedreamer_core/spaces.py``). The architecture is the one IP-Adapter "plus" files use (Flamingo-style perceiver: learned
queries attend to the features and to themselves), so those files load into it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, self.dim_head).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        scale = 1 / math.sqrt(math.sqrt(self.dim_head))
        weight = torch.softmax(((q * scale) @ (k * scale).transpose(-2, -1)).float(), dim=-1).to(q.dtype)
        return self.to_out((weight @ v).transpose(1, 2).reshape(b, n, -1))


class PerceiverStack(nn.Module):
    """Latents attend to projected features and to themselves, layer by layer (the perceiver body shared by the
    plus Resampler, whose latents are learned queries, and FaceID plus, whose latents are identity tokens)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, embedding_dim: int, output_dim: int,
                 ff_mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList([nn.ModuleList([PerceiverAttention(dim, dim_head, heads), _feed_forward(dim, ff_mult)])
                                     for _ in range(depth)])

    def forward(self, latents: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(features)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))

    @staticmethod
    def shape_from_state(state: dict, dim_head: int = 64) -> dict:
        """The constructor arguments that fit a state dict (keys without their ``image_proj.`` prefix)."""
        dim = int(state["proj_in.weight"].shape[0])
        return dict(dim=dim, depth=len({k.split(".")[1] for k in state if k.startswith("layers.")}), dim_head=dim_head,
                    heads=int(state["layers.0.0.to_q.weight"].shape[0]) // dim_head,
                    embedding_dim=int(state["proj_in.weight"].shape[1]), output_dim=int(state["proj_out.weight"].shape[0]),
                    ff_mult=int(state["layers.0.1.1.weight"].shape[0]) // dim)


class Resampler(PerceiverStack):
    """``[B, L, E]`` features -> ``[B, num_queries, output_dim]`` tokens (learned queries)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int, embedding_dim: int,
                 output_dim: int, ff_mult: int = 4):
        super().__init__(dim, depth, dim_head, heads, embedding_dim, output_dim, ff_mult)
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.latents.repeat(x.shape[0], 1, 1), x)

    @staticmethod
    def shape_from_state(state: dict, dim_head: int = 64) -> dict:
        return dict(PerceiverStack.shape_from_state(state, dim_head), num_queries=int(state["latents"].shape[1]))
