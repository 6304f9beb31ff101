"""InsightFace (ArcFace, 512-D): the identity embedder of the ComfyUI ecosystem, for users who have it.

IP-Adapter FaceID, InstantID and PuLID workflows all use InsightFace with its models under
``models/insightface/models/<pack>/`` (``antelopev2`` or ``buffalo_l``). If a user has that, their
identities match what those adapters expect. InsightFace is not a dependency of this pack: it is imported
only when chosen, and because its ``FaceAnalysis`` silently *downloads* a missing model pack, we check that
the pack's ``.onnx`` files are on disk first and refuse otherwise (no network at run time, ever).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .base import MAX_FACES, EmbeddingSpace, Face, FaceEmbedder, NoFaceFoundError, check_rgb_uint8, l2_normalise

#: Detection sizes tried in turn: a large face in a small photo is missed at 640 (as IP-Adapter FaceID
#: loaders do, we retry smaller).
DET_SIZES = (640, 320, 160)


def find_model_pack(roots: Sequence[str], name: str) -> str:
    """The first ``<root>/models/<name>`` folder holding ``.onnx`` files; a clear error naming every folder
    searched otherwise."""
    searched = []
    for root in roots:
        folder = os.path.join(root, "models", name)
        searched.append(folder)
        if os.path.isdir(folder) and any(f.endswith(".onnx") for f in os.listdir(folder)):
            return folder
    hint = ""
    for folder in searched:  # the antelopev2 zip unpacks into antelopev2/antelopev2/: a frequent mistake
        nested = os.path.join(folder, name)
        if os.path.isdir(nested) and any(f.endswith(".onnx") for f in os.listdir(nested)):
            hint = f" The .onnx files are in {nested}: move them up one folder, into {folder}."
            break
    raise FileNotFoundError(
        f"InsightFace model pack '{name}' not found (nothing is downloaded). Put its .onnx files in one of: "
        + ", ".join(searched)
        + f" (expected layout: <insightface folder>/models/{name}/*.onnx)."
        + hint
    )


class InsightFaceEmbedder(FaceEmbedder):
    """ArcFace ``normed_embedding`` of the largest face, from a local InsightFace model pack."""

    def __init__(self, roots: Sequence[str], name: str = "antelopev2"):
        try:
            import insightface  # noqa: F401
            from insightface.app import FaceAnalysis
        except ImportError as e:
            raise ImportError(
                "the insightface face embedder needs the insightface package (pip install insightface "
                "onnxruntime); or choose the dlib face embedder, which is installed with this pack"
            ) from e
        pack = find_model_pack(roots, name)
        root = os.path.dirname(os.path.dirname(pack))  # FaceAnalysis wants <root> with models/<name> inside
        try:
            import onnxruntime

            available = onnxruntime.get_available_providers()
        except ImportError:
            available = []
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or ["CPUExecutionProvider"]
        self._app = FaceAnalysis(name=name, root=root, providers=providers)
        self._prepared = None
        self.space = EmbeddingSpace(f"insightface_{name}", 512)

    def _faces(self, bgr: np.ndarray):
        for size in DET_SIZES:
            if self._prepared != size:
                self._app.prepare(ctx_id=0, det_size=(size, size))
                self._prepared = size
            faces = self._app.get(bgr)
            if faces:
                return faces
        return []

    def _main_face(self, image: np.ndarray):
        faces = self._faces(np.ascontiguousarray(image[:, :, ::-1]))  # InsightFace expects BGR
        if not faces:
            raise NoFaceFoundError("no face found")
        return max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))

    def _embed(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self._main_face(image).normed_embedding, dtype=np.float32)

    def faces(self, image: np.ndarray, camera=None, limit: int = MAX_FACES, expected: int = 0) -> list[Face]:
        """Every face the detector finds (the largest first, at most ``limit``), with its ArcFace embedding."""
        image = check_rgb_uint8(image)
        if limit < 1:
            return []
        found = self._faces(np.ascontiguousarray(image[:, :, ::-1]))
        found = sorted(found, key=lambda f: -(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))[:limit]
        h, w = image.shape[:2]
        out = []
        for f in found:
            l, t, r, b = (int(round(float(v))) for v in f.bbox)
            out.append(Face((max(l, 0), max(t, 0), min(r, w), min(b, h)),
                            l2_normalise(np.asarray(f.normed_embedding, dtype=np.float32)), float(getattr(f, "det_score", 1.0))))
        return out

    def face_crop(self, image: np.ndarray) -> np.ndarray:
        """The ArcFace-aligned crop from the face's five landmarks, as IP-Adapter FaceID plus was trained on."""
        from insightface.utils import face_align

        image = check_rgb_uint8(image)
        return face_align.norm_crop(image, landmark=self._main_face(image).kps, image_size=224)
