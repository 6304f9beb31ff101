"""The CLIP-Vision crop embedder: the identity fallback that never refuses a photo.

Face recognisers refuse photos without a detectable face (profiles, masks, stylised drawings). This
embedder crops the face when dlib finds one (the box enlarged to include hair and outline, made square)
and the centre square otherwise, and encodes the crop with an image encoder that the caller supplies:
in ComfyUI, the user's CLIP Vision model. It is a weaker identity signal than a face recogniser, and it
lives in its own identity space so a planner trained on one never silently receives the other.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .base import MAX_FACES, EmbeddingSpace, Face, FaceEmbedder, check_rgb_uint8, l2_normalise

#: ``encode(float [B, H, W, 3] in 0..1) -> [B, D]`` (the ComfyUI IMAGE convention).
EncodeFn = Callable[[torch.Tensor], torch.Tensor]

#: How much larger than the detector's box the crop is: dlib's box stops at the eyebrows and chin.
FACE_MARGIN = 1.6
#: Side of the square crops handed to the encoder (it resizes again to its own input size).
CROP_SIZE = 224


def square_crop_box(shape: tuple[int, int], face: Optional[tuple[int, int, int, int]], margin: float = FACE_MARGIN):
    """The square ``(left, top, right, bottom)`` to crop: around the face when given, else the centre."""
    h, w = shape
    if face is None:
        side = min(h, w)
        left, top = (w - side) // 2, (h - side) // 2
        return left, top, left + side, top + side
    l, t, r, b = face
    cx, cy = (l + r) / 2, (t + b) / 2
    side = int(min(max(r - l, b - t) * margin, h, w))
    left = int(min(max(cx - side / 2, 0), w - side))
    top = int(min(max(cy - side / 2, 0), h - side))
    return left, top, left + side, top + side


def crop_square(image: np.ndarray, box, size: int = CROP_SIZE) -> np.ndarray:
    from PIL import Image

    l, t, r, b = box
    return np.array(Image.fromarray(image[t:b, l:r]).resize((size, size), Image.BICUBIC))


def face_crop(image: np.ndarray, detect: bool = True, margin: float = FACE_MARGIN) -> np.ndarray:
    """The square crop around dlib's main face (enlarged by ``margin``), or the centre when there is none."""
    face = None
    if detect:
        from .dlib_embedder import detect_largest_face

        face = detect_largest_face(image)
    return crop_square(image, square_crop_box(image.shape[:2], face, margin))


class CropEncoderEmbedder(FaceEmbedder):
    """Identity from an image encoder on a face crop (or a centre crop when no face is found)."""

    def __init__(self, encode_fn: EncodeFn, name: str, dim: int, detect: bool = True, margin: float = FACE_MARGIN):
        """``name`` identifies the encoder (it names the identity space and the cache folder); ``detect=False``
        always takes the centre crop (then dlib is not needed)."""
        self.encode_fn = encode_fn
        self.detect = bool(detect)
        self.margin = float(margin)
        self.space = EmbeddingSpace(f"clip_vision_crop:{name}", int(dim))
        # The crop rule is part of the cache key: face crops and centre crops of one photo differ.
        self.version = f"1-face{self.margin:g}" if self.detect else "1-centre"

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The square crop that is encoded: around dlib's main face, or the centre when there is none."""
        return face_crop(image, self.detect, self.margin)

    def face_crop(self, image: np.ndarray) -> np.ndarray:
        return self.crop(check_rgb_uint8(image))

    def _encode(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack(crops)).float().div_(255.0)
        with torch.no_grad():
            out = self.encode_fn(batch)
        return out.detach().float().cpu().numpy().reshape(len(crops), -1)

    def _embed(self, image: np.ndarray) -> np.ndarray:
        return self._encode([self.crop(image)])[0]

    def faces(self, image: np.ndarray, camera=None, limit: int = MAX_FACES, expected: int = 0) -> list[Face]:
        """Each face dlib finds (``dlib_embedder.detect_faces``), cropped as ``crop`` crops the main one, all
        through the encoder in one batch; with no face found (or ``detect=False``), the centre crop as one face, as
        ``embed`` falls back to it (its box is the centre square)."""
        image = check_rgb_uint8(image)
        if limit < 1:
            return []
        found = []
        if self.detect:
            from .dlib_embedder import detect_faces

            found = [(box, score) for _, box, score in detect_faces(image, limit, expected=expected)]
        boxes = [square_crop_box(image.shape[:2], box, self.margin) for box, _ in found]
        if not found:
            boxes = [square_crop_box(image.shape[:2], None)]
            found = [(tuple(int(v) for v in boxes[0]), 1.0)]
        vectors = self._encode([crop_square(image, b) for b in boxes])
        return [Face(tuple(int(v) for v in box), l2_normalise(vec), float(score)) for (box, score), vec in zip(found, vectors)]

    def embed_many(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """All crops through the encoder in one batch."""
        if not images:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        vectors = self._encode([self.crop(check_rgb_uint8(im)) for im in images])
        if vectors.shape[1] != self.space.dim:
            raise RuntimeError(f"{self.space.encoder} returned {vectors.shape[1]} values, expected {self.space.dim}")
        return np.stack([l2_normalise(v) for v in vectors])
