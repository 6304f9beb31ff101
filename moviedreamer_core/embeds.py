"""``MD_SCRIPT_EMBEDS``: a script made numeric, ready for the planner and the renderer.

MovieDreamer feeds its planner *sentence-level* text embeddings (one vector per sentence, not word tokens)
and one face-identity embedding per character (paper section 3.2). This dataclass holds them together with
everything a later stage must check or reuse:

* per keyframe, one embedding per text segment (``SEGMENTS``: action, scene, style), ``[n_kf, 3, Dt]``;
* per keyframe and character on screen, the embedding of what the action sentence says about it (its *mention*,
  ``script/mentions.py``), so the planner can tell whose hat a sentence naming two characters states;
* per character, an identity *bank* (one embedding per reference image) and its normalised mean; the bank
  is what training-time face-embedding randomisation draws from, the mean is the default at inference;
* optional *reference tokens* per character (its reference images encoded into the visual token space),
  used by the zero-shot prior and by few-shot planning;
* optional *face states* per character (CLIP Vision hidden states of each reference's face crop), which
  FaceID-plus identity renderers read next to the identity embedding;
* the texts themselves, kept for the renderer's text condition;
* the declared text, identity and token spaces, so the planner and renderer can refuse a mismatch;
* the face embedder itself, so the renderer can check its keyframes' faces against the banks (identity report);
* ``script_hash`` (the script alone) and ``content_hash`` (script + spaces + every number in here).

Instances are immutable by convention: the host shares cached outputs by reference between nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from .script.schema import KeyframeSpec
from .spaces import EmbeddingSpace, TokenSpace

#: Order of the per-keyframe text segments in ``keyframe_text``.
SEGMENTS = ("action", "scene", "style")

#: The shot size of each ``script.Camera`` value in the words image models are prompted with (the renderer's text,
#: ``ScriptEmbeds.prompt``): film-language terms SD1.5 and SDXL checkpoints know from captions.
CAMERA_WORDS = {
    "extreme_wide": "extreme wide shot",
    "wide": "wide shot",
    "full": "full body shot",
    "medium": "medium shot",
    "medium_close_up": "medium close-up shot",
    "close_up": "close-up shot",
    "extreme_close_up": "extreme close-up shot",
    "over_the_shoulder": "over-the-shoulder shot",
    "point_of_view": "point-of-view shot",
    "aerial": "aerial shot",
}


@dataclass(frozen=True)
class CharacterEmbeds:
    """One character's identity: a bank of per-reference embeddings and their normalised mean."""

    name: str
    description: str
    bank: torch.Tensor  # [n_refs, Di], each row L2-normalised; [0, Di] when the character has no reference
    mean: torch.Tensor  # [Di], L2-normalised mean of the bank; zeros when there is no reference
    reference_names: tuple[str, ...]  # "file:ava.png" or "batch:0", one per bank row
    reference_tokens: Optional[torch.Tensor] = None  # [n_refs, K, D] in ``ScriptEmbeds.token_space``
    face_states: Optional[torch.Tensor] = None  # [n_refs, L, E] face crops in ``ScriptEmbeds.face_state_space``

    def mean_face_states(self) -> Optional[torch.Tensor]:
        """``[L, E]``: the face crops' features averaged over the references (as FaceID loaders combine
        several photos), or ``None`` when they were not computed or there is no reference."""
        if self.face_states is None or self.face_states.shape[0] == 0:
            return None
        return self.face_states.mean(0)

    @property
    def has_identity(self) -> bool:
        return self.bank.shape[0] > 0


@dataclass(frozen=True)
class ScriptEmbeds:
    title: str
    style: str
    script_hash: str
    content_hash: str
    text_space: EmbeddingSpace
    identity_space: EmbeddingSpace
    keyframes: tuple[KeyframeSpec, ...]
    keyframe_text: torch.Tensor  # [n_kf, len(SEGMENTS), Dt]
    style_embed: torch.Tensor  # [Dt]
    description_embeds: torch.Tensor  # [n_chars, Dt]
    characters: tuple[CharacterEmbeds, ...]
    token_space: Optional[TokenSpace] = None
    #: per keyframe and character on screen (in ``KeyframeSpec.characters`` order), the embedding of what the action
    #: sentence says about that character (``script.mentions``): ``[n_kf, M, Dt]``, zero rows where
    #: ``mention_present [n_kf, M]`` is False (not named, or past the keyframe's cast). ``None``: made before mentions.
    mention_text: Optional[torch.Tensor] = None
    mention_present: Optional[torch.Tensor] = None
    segments: tuple[str, ...] = field(default=SEGMENTS)
    face_state_space: Optional[TokenSpace] = None  # of ``CharacterEmbeds.face_states`` (CLIP Vision hidden states)
    #: ``distribution.split.ShotOutline`` of every shot (keyframes, duration, transition): how a distributed run
    #: splits the keyframes, the same way ShotAnimate splits the shots.
    shot_outlines: tuple = ()
    #: The ``identity.base.FaceEmbedder`` that made the identity banks: the renderer checks each rendered keyframe
    #: with this very embedder (``identity_report.py``). Its space is ``identity_space`` (hashed); the object is not
    #: part of the content hash, nor of equality. ``None`` for embeddings made without one.
    face_embedder: Optional[object] = field(default=None, compare=False, repr=False)
    #: What the face embedder found wrong with the references (``reference_problems``, where it has one: the toy
    #: cinema's): shown by ScriptEncode and logged. Derived from the references, so not part of equality.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def n_keyframes(self) -> int:
        return len(self.keyframes)

    def keyframe_window(self, start: int, stop: int) -> "ScriptEmbeds":
        """Keyframes ``start..stop-1`` with the header kept (style, characters, spaces), every per-keyframe field cut
        together, as ``planner.Story.window`` cuts a story: planning the result sees no keyframe outside the window
        (the toy benchmark's planner without history plans each keyframe this way). The hashes and ``shot_outlines``
        stay the whole script's."""
        cut = lambda t: None if t is None else t[start:stop]  # noqa: E731
        return replace(self, keyframes=self.keyframes[start:stop], keyframe_text=self.keyframe_text[start:stop],
                       mention_text=cut(self.mention_text), mention_present=cut(self.mention_present))

    @property
    def keyframe_shot(self) -> torch.Tensor:
        """``[n_kf]`` index of the shot each keyframe belongs to."""
        return torch.tensor([k.shot_index for k in self.keyframes], dtype=torch.long)

    def identity_means(self) -> torch.Tensor:
        """``[n_chars, Di]``: each character's mean identity (zeros for characters without references)."""
        if not self.characters:
            return torch.zeros(0, self.identity_space.dim)
        return torch.stack([c.mean for c in self.characters])

    def prompt(self, k: int) -> str:
        """The renderer's text for keyframe ``k``: the shot size (``CAMERA_WORDS``, e.g. "Close-up shot."), action,
        scene, who is on screen (described), style."""
        spec = self.keyframes[k]
        camera = CAMERA_WORDS.get(spec.camera, str(spec.camera).replace("_", " ") + " shot")
        parts = [camera[0].upper() + camera[1:] + ".", spec.action.rstrip(".") + ".", spec.scene.rstrip(".") + "."]
        for c in spec.characters:
            ch = self.characters[c]
            parts.append(f"{ch.name}: {ch.description.rstrip('.')}.")
        if self.style:
            parts.append(self.style.rstrip(".") + ".")
        return " ".join(parts)

    def summary(self) -> str:
        """One line for logs and the UI."""
        refs = sum(c.bank.shape[0] for c in self.characters)
        tokens = f", tokens {self.token_space.describe()}" if self.token_space else ""
        return (
            f'"{self.title}": {self.n_keyframes} keyframes, {len(self.characters)} characters ({refs} references); '
            f"text {self.text_space.describe()}, identity {self.identity_space.describe()}{tokens}"
        )
