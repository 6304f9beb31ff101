"""A story as the planner reads it: the numeric script plus (for training) its keyframes' true tokens.

``Story`` is the planner-side view of ``ScriptEmbeds`` (one movie), stripped of texts and names; a training
dataset yields the same ``Story`` with ``tokens`` filled in. ``Story.window(a, b)`` cuts keyframes
``a..b-1`` out with the whole header kept, the operation both training (random windows) and generation
(the sliding context) rely on. ``collate`` pads the embedded sequences of several stories into one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..embeds import ScriptEmbeds
from ..script.schema import Camera

#: The camera values a planner's camera input knows: ``CAMERAS[i]`` is embedding row ``i + 1`` (row 0: not stated).
#: Written out, not read from ``Camera``: the rows of every saved planner depend on this order, so a camera value
#: added to the script schema goes at the end here (tests/core/test_planner.py holds the list to the enum).
CAMERAS = ("extreme_wide", "wide", "full", "medium", "medium_close_up", "close_up", "extreme_close_up",
           "over_the_shoulder", "point_of_view", "aerial")


#: How much of the scene each camera value frames, widest first: where a planner was trained on films that state only
#: some camera values, a script's other values are planned as the nearest value it knows (``nearest_cameras``). No two
#: values are equally far from a third: a full shot is nearer a wide one than a medium one, a medium close-up nearer a
#: close-up, an over-the-shoulder shot and a point of view are medium shots, an aerial one is wide.
CAMERA_SIZE = {"extreme_wide": 0.0, "aerial": 0.1, "wide": 1.0, "full": 1.4, "over_the_shoulder": 2.9, "medium": 3.0,
               "point_of_view": 3.1, "medium_close_up": 4.6, "close_up": 5.0, "extreme_close_up": 6.0}


def nearest_camera(camera: str, known) -> str:
    """The value of ``known`` (camera names) that frames the scene most like ``camera`` (``CAMERA_SIZE``); ``camera``
    itself when it is known or nothing is."""
    known = [k for k in known if k in CAMERA_SIZE]
    if camera in known or not known or camera not in CAMERA_SIZE:
        return camera
    return min(known, key=lambda k: (abs(CAMERA_SIZE[k] - CAMERA_SIZE[camera]), CAMERA_SIZE[k]))


def nearest_cameras(known) -> list[int]:
    """For each ``CAMERAS`` index, the index of the nearest camera in ``known`` (names; empty: every value is known,
    as for planner files that do not say which they were trained on)."""
    return [CAMERAS.index(nearest_camera(c, known)) for c in CAMERAS]


def cameras_planned_as(cameras, known) -> dict[str, str]:
    """Of the camera values ``cameras`` (a script's, per keyframe; ``None`` for not stated), those outside ``known``
    mapped to the value a planner that knows only ``known`` plans them as (``{}`` when ``known`` is empty: all)."""
    named = dict.fromkeys(str(getattr(c, "value", c)) for c in cameras if c is not None)  # ``Camera`` or its value
    return {c: nearest_camera(c, known) for c in named if known and c in CAMERA_SIZE and c not in known}


def camera_index(camera) -> int:
    """``CAMERAS`` index of a ``script.Camera`` value (or its string); -1 for None or an unknown value."""
    if camera is None:
        return -1
    value = camera.value if isinstance(camera, Camera) else str(camera)
    return CAMERAS.index(value) if value in CAMERAS else -1


@dataclass
class Story:
    style: torch.Tensor  # [Dt]
    descriptions: torch.Tensor  # [C, Dt]
    identity_banks: list  # C tensors [n_c, Di] (n_c may be 0)
    keyframe_text: torch.Tensor  # [N, S, Dt]
    keyframe_characters: list  # N tuples of character indices on screen
    tokens: Optional[torch.Tensor] = None  # [N, K, D] true tokens (training / teacher forcing)
    reference_tokens: Optional[list] = None  # C entries of [r_c, K, D] or None (few-shot references)
    keyframe_camera: Optional[torch.Tensor] = None  # [N] long, ``CAMERAS`` index per keyframe, -1 not stated;
    # None: no keyframe states one (data written before the camera input, real movies without shot sizes)
    keyframe_mentions: Optional[torch.Tensor] = None  # [N, M, Dt] what the action says of each on-screen character
    mention_present: Optional[torch.Tensor] = None  # [N, M] bool, False where a character is not named;
    # both None: no mentions (data written before them); ``ScriptEmbeds.mention_text`` / ``mention_present``

    def mention(self, i: int, p: int) -> Optional[torch.Tensor]:
        """``[Dt]``: what keyframe i's action says of its p-th on-screen character, or None when it does not name it."""
        if self.keyframe_mentions is None or p >= self.mention_present.shape[1] or not bool(self.mention_present[i, p]):
            return None
        return self.keyframe_mentions[i, p]

    def camera_ids(self) -> torch.Tensor:
        """``[N]`` long: each keyframe's ``CAMERAS`` index, -1 where the story states none."""
        if self.keyframe_camera is None:
            return torch.full((self.n_keyframes,), -1, dtype=torch.long)
        return self.keyframe_camera.long()

    @property
    def n_keyframes(self) -> int:
        return int(self.keyframe_text.shape[0])

    @property
    def n_characters(self) -> int:
        return int(self.descriptions.shape[0])

    def identity_means(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[C, Di]`` normalised mean identity per character and ``[C]`` has-identity flags."""
        means, has = [], []
        for bank in self.identity_banks:
            if bank.shape[0]:
                means.append(torch.nn.functional.normalize(bank.float().mean(0), dim=0))
                has.append(True)
            else:
                means.append(torch.zeros(dim))
                has.append(False)
        if not means:
            return torch.zeros(0, dim), torch.zeros(0, dtype=torch.bool)
        return torch.stack(means), torch.tensor(has)

    def window(self, start: int, stop: int) -> "Story":
        """Keyframes ``start..stop-1`` with the full script header."""
        return replace(
            self,
            keyframe_text=self.keyframe_text[start:stop],
            keyframe_characters=list(self.keyframe_characters[start:stop]),
            tokens=None if self.tokens is None else self.tokens[start:stop],
            keyframe_camera=None if self.keyframe_camera is None else self.keyframe_camera[start:stop],
            keyframe_mentions=None if self.keyframe_mentions is None else self.keyframe_mentions[start:stop],
            mention_present=None if self.mention_present is None else self.mention_present[start:stop],
        )


def story_from_embeds(embeds: ScriptEmbeds, reference_tokens: Optional[list] = None,
                      tokens: Optional[torch.Tensor] = None) -> Story:
    """The planner's view of ``MD_SCRIPT_EMBEDS``. ``reference_tokens`` (per character, or ``None``) overrides
    the characters' own reference tokens for few-shot planning; ``tokens [N, K, D]`` are the keyframes' true
    tokens when the story is for training (e.g. its rendered frames encoded by the keyframe tokenizer)."""
    if reference_tokens is None and any(c.reference_tokens is not None for c in embeds.characters):
        reference_tokens = [c.reference_tokens for c in embeds.characters]
    if reference_tokens is not None and len(reference_tokens) != len(embeds.characters):
        raise ValueError(f"reference_tokens has {len(reference_tokens)} entries for {len(embeds.characters)} characters")
    if tokens is not None and (tokens.ndim != 3 or tokens.shape[0] != embeds.n_keyframes):
        raise ValueError(f"tokens must be [{embeds.n_keyframes}, K, D] (one row per keyframe), got {tuple(tokens.shape)}")
    return Story(
        style=embeds.style_embed.float(),
        descriptions=embeds.description_embeds.float(),
        identity_banks=[c.bank.float() for c in embeds.characters],
        keyframe_text=embeds.keyframe_text.float(),
        keyframe_characters=[tuple(k.characters) for k in embeds.keyframes],
        tokens=None if tokens is None else tokens.float(),
        reference_tokens=reference_tokens,
        keyframe_camera=torch.tensor([camera_index(k.camera) for k in embeds.keyframes], dtype=torch.long),
        keyframe_mentions=None if embeds.mention_text is None else embeds.mention_text.float(),
        mention_present=None if embeds.mention_present is None else embeds.mention_present.bool(),
    )


def collate(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stories of different lengths as one batch: embedded sequences ``[L_b, H]`` right-padded with zeros to
    ``[B, L, H]``, and the attention mask ``[B, L]`` (1 = real element). Causal attention plus right padding
    means padding never changes a real element's output (tested), so any mix of lengths trains together."""
    L = max(s.shape[0] for s in sequences)
    x = sequences[0].new_zeros(len(sequences), L, sequences[0].shape[-1])
    mask = torch.zeros(len(sequences), L, dtype=torch.long, device=x.device)
    for b, s in enumerate(sequences):
        x[b, :s.shape[0]] = s
        mask[b, :s.shape[0]] = 1
    return x, mask
