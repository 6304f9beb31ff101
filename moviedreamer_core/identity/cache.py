"""On-disk cache of identity embeddings, keyed by image content.

Face embedding is the slow part of ScriptEncode on a CPU (about 0.2 s a photo with dlib) and the same
reference photos are encoded again every time a user tweaks a sentence and re-queues. Entries are keyed by
the SHA-256 of the pixels and shape plus the embedder's ``cache_tag`` (encoder, size, preprocessing
version), stored as small safetensors files written atomically, so a crash never leaves a half entry and
a corrupt entry is simply recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

import numpy as np
from safetensors.numpy import load_file, save

from ..files import atomic_write_bytes

from .base import FaceEmbedder, check_rgb_uint8

log = logging.getLogger(__name__)


def image_sha256(image: np.ndarray) -> str:
    """Content hash of a ``uint8 [H, W, 3]`` image (pixels and shape)."""
    image = check_rgb_uint8(image)
    h = hashlib.sha256(str(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


def tag_folder(tag: str) -> str:
    """The folder name for a ``cache_tag``: the tag itself when it is a safe file name everywhere, else the
    tag with unsafe characters replaced plus a short hash of the original (``clip_vision_crop:<name>`` has a
    colon, which Windows forbids in file names)."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,100}", tag):
        return tag
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tag)[:80]
    return f"{safe}-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"


class IdentityCache:
    """Embeddings on disk under ``<root>/<tag folder>/<hash[:2]>/<hash>.safetensors``, with an in-memory layer.

    ``get_or_compute(embedder, image)`` and ``get_or_compute_many(embedder, images)``. The counters say what
    happened: ``hits`` counts images answered without running the embedder, ``misses`` the images embedded.
    """

    def __init__(self, root: str):
        self.root = root
        self.hits = 0
        self.misses = 0
        self._memory: dict[tuple[str, str], np.ndarray] = {}

    def _path(self, tag: str, digest: str) -> str:
        return os.path.join(self.root, tag_folder(tag), digest[:2], digest + ".safetensors")

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
        """Store one entry (memory always; disk when possible). A failed disk write (read-only or full
        folder) costs a warning, not the embedding that was just computed."""
        self._memory[(tag, digest)] = vec
        path = self._path(tag, digest)
        try:
            atomic_write_bytes(path, save({"embedding": np.ascontiguousarray(vec, dtype=np.float32)}), fsync=False)
        except OSError as e:
            log.warning("identity cache: could not write %s (%s); the embedding is kept in memory only", path, e)

    def get_or_compute_many(self, embedder: FaceEmbedder, images) -> np.ndarray:
        """``[N, dim]``: cached rows are read, the misses go through ``embedder.embed_many`` in one batch
        (an image repeated within the batch is embedded once).

        Errors (e.g. ``NoFaceFoundError``) propagate and nothing is cached for the failing batch.
        """
        tag, dim = embedder.cache_tag, embedder.space.dim
        digests = [image_sha256(im) for im in images]
        out: list = [self._read(tag, d, dim) for d in digests]
        first_missing: dict[str, int] = {}
        for i, v in enumerate(out):
            if v is None:
                first_missing.setdefault(digests[i], i)
        self.hits += len(images) - len(first_missing)
        self.misses += len(first_missing)
        if first_missing:
            order = list(first_missing.values())
            fresh = np.asarray(embedder.embed_many([images[i] for i in order]), dtype=np.float32)
            if fresh.shape != (len(order), dim):
                raise RuntimeError(f"{embedder.space.encoder} returned shape {fresh.shape}, expected {(len(order), dim)}")
            for i, vec in zip(order, fresh):
                self._write(tag, digests[i], vec.copy())
            out = [v if v is not None else self._memory[(tag, d)] for v, d in zip(out, digests)]
        if not out:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack(out)

    def get_or_compute(self, embedder: FaceEmbedder, image: np.ndarray) -> np.ndarray:
        return self.get_or_compute_many(embedder, [image])[0]
