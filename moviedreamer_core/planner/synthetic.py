"""A synthetic story world with known ground truth, to prove the planner learns what the paper claims.

Each story has a style, 2-4 characters (random identity vectors, each with a small bank of noisy "photos"),
and 3-6 shots of 1-3 keyframes, each shot with its own scene sentence. A keyframe's true tokens (K=2) are a
fixed linear function of its script, plus a per-story *state* that no script field reveals:

* token 0 = ``W_id @ sum(identities on screen)`` + state   (who is in the frame)
* token 1 = ``W_scene @ scene + W_style @ style`` + state  (where, and how it looks)

The state is drawn per story and stays constant, like a movie's look; it can only be read from the tokens
of earlier keyframes. So: a planner without history cannot know it (no-history baseline), one without the
script cannot know the identities and scenes (no-script baseline), and a planner that really binds
identities to keyframes moves token 0 when two characters' identities are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .inputs import Story


@dataclass
class WorldConfig:
    text_dim: int = 16
    identity_dim: int = 8
    K: int = 2
    D: int = 8
    state_scale: float = 0.8
    noise: float = 0.02
    photos_per_character: int = 3
    photo_noise: float = 0.1
    state_persistence: float = 1.0  # correlation of the state between consecutive shots (1: one state per story)
    identity_scale: float = 1.5


class SyntheticWorld:
    def __init__(self, cfg: WorldConfig = WorldConfig(), seed: int = 0):
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        self.W_id = torch.randn(cfg.D, cfg.identity_dim, generator=g) / cfg.identity_dim ** 0.5 * cfg.identity_scale
        self.W_scene = torch.randn(cfg.D, cfg.text_dim, generator=g) / cfg.text_dim ** 0.5
        self.W_style = torch.randn(cfg.D, cfg.text_dim, generator=g) / cfg.text_dim ** 0.5 * 0.5

    def script_part(self, story: Story, identities: torch.Tensor) -> torch.Tensor:
        """``[N, K, D]``: the part of every keyframe's tokens that the script determines."""
        out = torch.zeros(story.n_keyframes, self.cfg.K, self.cfg.D)
        for i in range(story.n_keyframes):
            on = list(story.keyframe_characters[i])
            if on:
                out[i, 0] = self.W_id @ identities[on].sum(0)
            out[i, 1] = self.W_scene @ story.keyframe_text[i, 1] + self.W_style @ story.style
        return out

    def story(self, g: torch.Generator) -> tuple[Story, dict]:
        """One random story with its true tokens; ``info`` holds the hidden parts (identities, state)."""
        cfg = self.cfg
        C = int(torch.randint(2, 5, (), generator=g))
        identities = torch.nn.functional.normalize(torch.randn(C, cfg.identity_dim, generator=g), dim=1)
        banks = [torch.nn.functional.normalize(identities[c] + cfg.photo_noise * torch.randn(cfg.photos_per_character, cfg.identity_dim, generator=g), dim=1)
                 for c in range(C)]
        style = torch.randn(cfg.text_dim, generator=g)
        texts, casts, shots = [], [], []
        for shot in range(int(torch.randint(3, 7, (), generator=g))):
            scene = torch.randn(cfg.text_dim, generator=g)
            n_on = int(torch.randint(0, min(C, 2) + 1, (), generator=g))
            cast = tuple(sorted(torch.randperm(C, generator=g)[:n_on].tolist()))
            for _ in range(int(torch.randint(1, 4, (), generator=g))):
                action = torch.randn(cfg.text_dim, generator=g)  # a distractor: tokens do not depend on it
                texts.append(torch.stack([action, scene, style]))
                casts.append(cast)
                shots.append(shot)
        story = Story(style=style, descriptions=torch.randn(C, cfg.text_dim, generator=g), identity_banks=banks,
                      keyframe_text=torch.stack(texts), keyframe_characters=casts)
        shot_states = [cfg.state_scale * torch.randn(cfg.D, generator=g)]
        rho = cfg.state_persistence
        for _ in range(shots[-1]):
            fresh = cfg.state_scale * torch.randn(cfg.D, generator=g) if rho < 1 else 0.0
            shot_states.append(rho * shot_states[-1] + (1 - rho ** 2) ** 0.5 * fresh)
        state = torch.stack([shot_states[k] for k in shots])[:, None]  # [N, 1, D]
        script = self.script_part(story, identities)
        story.tokens = script + state + cfg.noise * torch.randn(script.shape, generator=g)
        return story, {"identities": identities, "state": state, "script_part": script, "shots": shots}

    def stories(self, n: int, seed: int) -> list[tuple[Story, dict]]:
        g = torch.Generator().manual_seed(seed)
        return [self.story(g) for _ in range(n)]
