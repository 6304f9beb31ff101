"""On-disk cache of identity embeddings, keyed by image content.

Face embedding is the slow part of ScriptEncode on a CPU (about 0.2 s a photo with dlib) and the same
reference photos are encoded again every time a user tweaks a sentence and re-queues. Entries are keyed by
the SHA-256 of the pixels and shape plus the embedder's ``cache_tag`` (encoder, size, preprocessing
version), stored as small safetensors files written atomically, so a crash never leaves a half entry and
a corrupt entry is simply recomputed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

from .base import FaceEmbedder, check_rgb_uint8


def image_sha256(image: np.ndarray) -> str:
    """Content hash of a ``uint8 [H, W, 3]`` image (pixels and shape)."""
    image = check_rgb_uint8(image)
    h = hashlib.sha256(str(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


class IdentityCache:
    """``get_or_compute(embedder, image)``; counters ``hits`` and ``misses`` say what happened."""

    def __init__(self, root: str):
        self.root = root
        self.hits = 0
        self.misses = 0
        self._memory: dict[tuple[str, str], np.ndarray] = {}

    def _path(self, tag: str, digest: str) -> str:
        return os.path.join(self.root, tag, digest[:2], digest + ".safetensors")

    def _read(self, tag: str, digest: str, dim: int):
        key = (tag, digest)
        if key in self._memory:
            return self._memory[key]
        path = self._path(tag, digest)
        if not os.path.isfile(path):
            return None
        try:
            vec = load_file(path)["embedding"]
        except Exception:  # corrupt or truncated entry: recompute and overwrite
            return None
        if vec.shape != (dim,) or not np.all(np.isfinite(vec)):
            return None
        self._memory[key] = vec
        return vec

    def _write(self, tag: str, digest: str, vec: np.ndarray) -> None:
        path = self._path(tag, digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        os.close(fd)
        try:
            save_file({"embedding": np.ascontiguousarray(vec, dtype=np.float32)}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self._memory[(tag, digest)] = vec

    def get_or_compute_many(self, embedder: FaceEmbedder, images) -> np.ndarray:
        """``[N, dim]``: cached rows are read, the misses go through ``embedder.embed_many`` in one batch.

        Errors (e.g. ``NoFaceFoundError``) propagate and nothing is cached for the failing batch.
        """
        tag, dim = embedder.cache_tag, embedder.space.dim
        digests = [image_sha256(im) for im in images]
        out: list = [self._read(tag, d, dim) for d in digests]
        missing = [i for i, v in enumerate(out) if v is None]
        self.hits += len(images) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = embedder.embed_many([images[i] for i in missing])
            for i, vec in zip(missing, fresh):
                vec = np.asarray(vec, dtype=np.float32)
                self._write(tag, digests[i], vec)
                out[i] = vec
        if not out:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack(out)

    def get_or_compute(self, embedder: FaceEmbedder, image: np.ndarray) -> np.ndarray:
        return self.get_or_compute_many(embedder, [image])[0]
