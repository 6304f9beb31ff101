"""The face-identity embedder interface.

MovieDreamer conditions both the planner and the renderer on a face identity embedding per character
(paper section 3.2, "multimodal script"; section 3.4, identity-preserving rendering). Users bring different
face models, so every embedder sits behind this one small interface and declares the *identity space* it
produces: later stages (planner, renderer) refuse an embedding from a different space by name and size.

Images are ``uint8`` numpy arrays ``[H, W, 3]`` in RGB order. Embeddings are ``float32`` numpy vectors,
L2-normalised, so cosine similarity is a dot product whatever the embedder.

Besides one embedding per reference photo, an embedder can list *every* face it finds in an image (``faces``): the
per-keyframe identity report (``moviedreamer_core/identity_report.py``) checks each rendered keyframe with the very
embedder that made the script's identities.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class EmbeddingSpace:
    """A named vector space: which encoder produced the vectors and their size.

    Two spaces are compatible only when both fields are equal; ``describe`` gives the text used in
    mismatch errors, e.g. ``dlib_resnet_v1 (128-D)``.
    """

    encoder: str
    dim: int

    def describe(self) -> str:
        return f"{self.encoder} ({self.dim}-D)"

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "dim": int(self.dim)}

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddingSpace":
        """The space a file or dataset declares; ``ValueError`` naming the field when it is not one (a dimension of
        10^12 would have a trainer ask for terabytes, a list instead of an object fail deep inside)."""
        return cls(encoder=space_text(d, "encoder"), dim=space_size(d, "dim", 1))


#: The largest vector width a declared space may have (the widest encoders in use are a few thousand).
MAX_SPACE_WIDTH = 1 << 16


def space_text(d, key: str) -> str:
    """``d[key]`` of a declared space as text (see ``EmbeddingSpace.from_dict``)."""
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"a space must be an object with {key!r}, got {str(d)[:100]}")
    return str(d[key])[:200]


def space_size(d, key: str, low: int, high: int = MAX_SPACE_WIDTH) -> int:
    """``d[key]`` of a declared space as a whole number from ``low`` to ``high`` (see ``EmbeddingSpace.from_dict``)."""
    space_text(d, key)
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"a space's {key} must be a whole number from {low} to {high:,}, got {str(value)[:100]}")
    return value


class NoFaceFoundError(ValueError):
    """Raised when an embedder that needs a face finds none in an image."""


#: At most this many faces are read from one image (``FaceEmbedder.faces``): a crowd scene costs a bounded time.
MAX_FACES = 16

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


@dataclass(frozen=True)
class Face:
    """One face found in an image: its box (pixels), its L2-normalised identity embedding in the embedder's space,
    and the detector's confidence (1.0 when the embedder has no detector)."""

    box: Box
    embedding: np.ndarray
    score: float = 1.0


class FaceEmbedder(ABC):
    """Turns one RGB image into one identity embedding.

    Subclasses set ``space`` and implement ``_embed``; ``embed`` checks the input and normalises the output
    so every embedder behaves the same at the boundary.
    """

    #: The identity space this embedder produces. Part of the on-disk cache key.
    space: EmbeddingSpace

    #: Bumped when an embedder's preprocessing changes, so stale cache entries are not reused.
    version: str = "1"

    @abstractmethod
    def _embed(self, image: np.ndarray) -> np.ndarray:
        """Embed one checked ``uint8 [H, W, 3]`` image; raise ``NoFaceFoundError`` when there is no face."""

    def embed(self, image: np.ndarray) -> np.ndarray:
        image = check_rgb_uint8(image)
        vec = np.asarray(self._embed(image), dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.space.dim:
            raise RuntimeError(f"{self.space.encoder} returned {vec.shape[0]} values, expected {self.space.dim}")
        return l2_normalise(vec)

    def embed_many(self, images) -> np.ndarray:
        """``[N, dim]`` embeddings of several images. Subclasses that can batch override this."""
        if len(images) == 0:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        return np.stack([self.embed(im) for im in images])

    def faces(self, image: np.ndarray, camera: Optional[str] = None, limit: int = MAX_FACES,
              expected: int = 0) -> list[Face]:
        """Every face in ``image`` (at most ``limit``, the most face-like first), each embedded as ``embed`` embeds a
        reference photo. ``camera`` is the shot's size as the script names it (``"wide"``, ``"close_up"``, ...): a
        hint an embedder may use to know where faces can be (the toy cinema's does), others ignore it. ``expected``,
        the shot's number of characters, another hint: dlib looks harder when it found fewer (an embedder of earlier
        releases without the argument is called without it: ``identity_report``).

        Default, for embedders that see one face per image: the whole image's embedding as one face (none when
        ``embed`` finds no face). Embedders with a detector that finds several faces override this."""
        image = check_rgb_uint8(image)
        if limit < 1:
            return []
        try:
            vec = self.embed(image)
        except NoFaceFoundError:
            return []
        return [Face((0, 0, int(image.shape[1]), int(image.shape[0])), vec)]

    def face_crop(self, image: np.ndarray) -> np.ndarray:
        """The square ``uint8`` crop of the main face that FaceID-plus renderers read through CLIP Vision
        (paper section 3.4 feeds the decoder face information). Default: dlib's face box enlarged to take
        in hair and outline, or the centre square when no face is found; embedders with their own face
        alignment override it."""
        from .clip_crop import face_crop

        return face_crop(check_rgb_uint8(image))

    @property
    def cache_tag(self) -> str:
        """The part of the cache key that names this embedder and its preprocessing."""
        return f"{self.space.encoder}-{self.space.dim}-v{self.version}"


def check_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return a C-contiguous ``uint8 [H, W, 3]`` array or raise a ``ValueError`` saying what is wrong."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [H, W, 3], got shape {tuple(image.shape)}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image is too small ({image.shape[1]}x{image.shape[0]} pixels)")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    return np.ascontiguousarray(image)


def l2_normalise(vec: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32)
    return vec / max(float(np.linalg.norm(vec)), eps)
