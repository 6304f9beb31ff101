"""The zero-shot prior: a training-free planner, so the pipeline renders today with public decoders.

No MovieDreamer planner weights exist publicly. This prior plans in the ``clip_vision.image_embeds`` token
space, where IP-Adapter-family decoders already render, from two things the script provides:

* the *cast*: the mean reference token of each character on screen (their photos encoded by CLIP Vision,
  ScriptEncode's reference tokens), averaged over the characters on screen;
* *continuity*: the previous keyframe's tokens.

Rules for keyframe i (weights are the ``continuity_*`` arguments):

====================================================  ==========================================
situation                                             tokens
====================================================  ==========================================
first keyframe                                        cast (nobody on screen: all characters' mean)
same shot as the previous keyframe                    0.7 previous + 0.3 cast
new shot sharing a character with the previous one    0.35 previous + 0.65 cast
new shot, different cast                              0.1 previous + 0.9 cast
nobody on screen                                      previous (same shot) or 0.5 previous + 0.5
                                                      all characters' mean (new shot)
====================================================  ==========================================

A blend is rescaled to the weighted mean norm of its sources (averaging unit-ish CLIP embeddings shrinks
them, which decoders read as "less of everything"). Temperature adds seeded Gaussian noise of
``0.05 * temperature`` times the references' per-dimension spread. It ignores the text: the renderer
gets the keyframe's sentences through its own text condition.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..embeds import ScriptEmbeds
from ..spaces import TokenSpace
from ..storyboard import derive_seed

NOISE_SCALE = 0.05


class ZeroShotPrior:
    name = "zero_shot_prior"

    def __init__(self, continuity_same_shot: float = 0.7, continuity_shared_cast: float = 0.35,
                 continuity_new_cast: float = 0.1, continuity_empty_new_shot: float = 0.5):
        self.same_shot = continuity_same_shot
        self.shared_cast = continuity_shared_cast
        self.new_cast = continuity_new_cast
        self.empty_new_shot = continuity_empty_new_shot

    @staticmethod
    def _references(embeds: ScriptEmbeds, reference_tokens: Optional[list]) -> list:
        refs = reference_tokens if reference_tokens is not None else [c.reference_tokens for c in embeds.characters]
        if len(refs) != len(embeds.characters):
            raise ValueError(f"reference_tokens has {len(refs)} entries for {len(embeds.characters)} characters")
        return [None if r is None or r.shape[0] == 0 else r.float() for r in refs]

    def token_space_for(self, embeds: ScriptEmbeds, reference_tokens: Optional[list] = None) -> TokenSpace:
        if reference_tokens is None and embeds.token_space is not None:
            return embeds.token_space
        refs = [r for r in self._references(embeds, reference_tokens) if r is not None]
        if not refs:
            raise ValueError("the zero-shot prior needs reference tokens: connect a CLIP Vision model to ScriptEncode "
                             "and give the characters reference photos")
        return TokenSpace("clip_vision.image_embeds", int(refs[0].shape[1]), int(refs[0].shape[2]))

    @staticmethod
    def _blend(parts: list) -> torch.Tensor:
        """Weighted mean of ``(weight, tokens [K, D])`` rescaled per token to the weighted mean norm."""
        total = sum(w for w, _ in parts)
        mix = sum(w * t for w, t in parts) / total
        norm = sum(w * t.norm(dim=-1, keepdim=True) for w, t in parts) / total
        return mix / mix.norm(dim=-1, keepdim=True).clamp_min(1e-8) * norm

    def plan(self, embeds: ScriptEmbeds, *, seed: int, temperature: float = 0.0, reference_tokens: Optional[list] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
        refs = self._references(embeds, reference_tokens)
        missing = sorted({embeds.characters[c].name for k in embeds.keyframes for c in k.characters if refs[c] is None})
        if missing:
            raise ValueError(f"the zero-shot prior needs reference tokens for every character on screen; missing for: "
                             f"{', '.join(missing)}. Connect a CLIP Vision model to ScriptEncode and give them reference photos.")
        available = [r.mean(0) for r in refs if r is not None]
        if not available:
            raise ValueError("the zero-shot prior needs reference tokens: connect a CLIP Vision model to ScriptEncode "
                             "and give the characters reference photos")
        everyone = self._blend([(1.0, t) for t in available])
        spread = torch.cat([r for r in refs if r is not None]).std(0) if sum(r.shape[0] for r in refs if r is not None) > 1 \
            else everyone.abs().mean() * torch.ones_like(everyone)
        K, D = everyone.shape
        out = torch.zeros(embeds.n_keyframes, K, D)
        for i, spec in enumerate(embeds.keyframes):
            prev_spec = embeds.keyframes[i - 1] if i else None
            cast = self._blend([(1.0, refs[c].mean(0)) for c in spec.characters]) if spec.characters else None
            if prev_spec is None:
                tokens = cast if cast is not None else everyone
            elif cast is None:
                same = prev_spec.shot_index == spec.shot_index
                tokens = out[i - 1] if same else self._blend([(self.empty_new_shot, out[i - 1]),
                                                               (1 - self.empty_new_shot, everyone)])
            else:
                if prev_spec.shot_index == spec.shot_index:
                    a = self.same_shot
                elif set(prev_spec.characters) & set(spec.characters):
                    a = self.shared_cast
                else:
                    a = self.new_cast
                tokens = self._blend([(a, out[i - 1]), (1 - a, cast)]) if a > 0 else cast
            if temperature > 0:
                gen = torch.Generator().manual_seed(derive_seed(seed, i))
                tokens = tokens + NOISE_SCALE * temperature * spread * torch.randn(tokens.shape, generator=gen)
            out[i] = tokens
            if progress is not None:
                progress(i + 1, embeds.n_keyframes)
        return out
