"""Declared vector spaces: which encoder made a vector, and its shape.

Every numeric thing that crosses a stage boundary carries the space it lives in, so a planner trained on
one text encoder, or a renderer trained on one token space, refuses inputs from another with a message
naming both sides instead of producing silent garbage (README, "MovieDreamerPlannerLoader").

* ``EmbeddingSpace`` (text and identity vectors): encoder name + dimension.
* ``TokenSpace`` (keyframe visual tokens): source + K tokens of D values, e.g.
  ``{"source": "clip_vision.image_embeds", "K": 1, "D": 1024}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .identity.base import EmbeddingSpace, space_size, space_text

#: The most visual tokens a keyframe may have in a declared token space.
MAX_TOKENS = 4096


class SpaceMismatchError(ValueError):
    """Two stages disagree on a space; the message names what each side has."""


@dataclass(frozen=True)
class TokenSpace:
    """The space of a keyframe's visual tokens: ``K`` tokens of ``D`` values from ``source``."""

    source: str
    K: int
    D: int

    def describe(self) -> str:
        return f"{self.source} (K={self.K if self.K else 'any'}, D={self.D})"

    def accepts(self, other: "TokenSpace") -> bool:
        """Whether a decoder declared in this space can read tokens from ``other``. ``K=0`` means any number
        of tokens (a resampler reads however many features it is given)."""
        return self.source == other.source and self.D == other.D and (self.K == 0 or self.K == other.K)

    def to_dict(self) -> dict:
        return {"source": self.source, "K": int(self.K), "D": int(self.D)}

    @classmethod
    def from_dict(cls, d: dict) -> "TokenSpace":
        """The space a file or dataset declares; ``ValueError`` naming the field when it is not one (K 0 means any;
        K and D 0 with source "none": a renderer that reads no tokens, an IP-Adapter FaceID file)."""
        return cls(source=space_text(d, "source"), K=space_size(d, "K", 0, MAX_TOKENS), D=space_size(d, "D", 0))


def require_token_space(decoder: "TokenSpace", tokens: "TokenSpace", decoder_from: str, tokens_from: str) -> None:
    """Raise ``SpaceMismatchError`` unless the decoder accepts the tokens (see ``TokenSpace.accepts``)."""
    if not decoder.accepts(tokens):
        raise SpaceMismatchError(f"token space mismatch: {decoder_from} expects {decoder.describe()}, "
                                 f"but {tokens_from} provides {tokens.describe()}")


def require_same_space(kind: str, expected, got, expected_from: str, got_from: str) -> None:
    """Raise ``SpaceMismatchError`` unless two declared spaces are equal.

    ``kind`` names the space ("text", "identity", "token"); the ``*_from`` texts say where each side comes
    from, e.g. ``"the planner file story_v2.safetensors"`` and ``"ScriptEncode"``.
    """
    if expected != got:
        raise SpaceMismatchError(
            f"{kind} space mismatch: {expected_from} expects {expected.describe()}, "
            f"but {got_from} provides {got.describe()}"
        )


#: The spaces a planner file and a planner dataset declare, under these keys.
DECLARED_SPACES = (("text_space", EmbeddingSpace), ("identity_space", EmbeddingSpace), ("token_space", TokenSpace))
SPACE_KEYS = tuple(key for key, _ in DECLARED_SPACES)


def check_declared_spaces(declared: dict) -> None:
    """``ValueError`` ("token_space: a space's K must be ...") unless ``declared`` holds each of ``DECLARED_SPACES``
    as its ``from_dict`` reads it."""
    for key, space in DECLARED_SPACES:
        try:
            space.from_dict(declared.get(key))
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None


__all__ = ["DECLARED_SPACES", "EmbeddingSpace", "SPACE_KEYS", "TokenSpace", "SpaceMismatchError", "check_declared_spaces",
           "require_same_space", "require_token_space"]
