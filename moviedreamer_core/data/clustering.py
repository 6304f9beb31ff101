"""Faces grouped into characters across a whole film.

The planner needs each keyframe's characters as *indices into the film's cast*, with a bank of identity
embeddings per character (arXiv 2407.16655, section 3.2; the bank feeds the paper's face-embedding
randomisation in training). Without labels, the cast is recovered by clustering every face found in the
film's keyframes: average-linkage agglomerative clustering on cosine distance, cut at ``threshold``.
Average linkage resists chaining (one blurry face bridging two people) better than single linkage.

The default threshold suits dlib's 128-D descriptors: dlib's rule "same person within Euclidean 0.6" on its
raw vectors (norm about 1.4) is a cosine distance of about 0.09; 0.07 leans towards splitting a person into
two clusters rather than merging two people (naming from reference photos merges clusters again).
scipy's ``linkage`` is used when installed (fast for thousands of faces); otherwise a plain numpy version.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.07


def _numpy_average_linkage(vectors: np.ndarray, threshold: float) -> np.ndarray:
    n = vectors.shape[0]
    dist = 1.0 - vectors @ vectors.T
    np.fill_diagonal(dist, np.inf)
    sizes = np.ones(n)
    alive = np.ones(n, dtype=bool)
    labels = np.arange(n)
    while alive.sum() > 1:
        masked = np.where(alive[:, None] & alive[None, :], dist, np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        if masked[i, j] > threshold:
            break
        # Lance-Williams update for average linkage: merge j into i.
        merged = (sizes[i] * dist[i] + sizes[j] * dist[j]) / (sizes[i] + sizes[j])
        dist[i, :], dist[:, i] = merged, merged
        dist[i, i] = np.inf
        sizes[i] += sizes[j]
        alive[j] = False
        dist[j, :], dist[:, j] = np.inf, np.inf
        labels[labels == j] = i
    return labels


def cluster(vectors: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Cluster labels ``[n]`` for L2-normalised ``vectors [n, d]``, numbered 0, 1, ... in order of first
    appearance (row order), so ``char_00`` is the first character seen."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = vectors.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    try:
        from scipy.cluster.hierarchy import fcluster, linkage

        raw = fcluster(linkage(vectors, method="average", metric="cosine"), t=threshold, criterion="distance")
    except ImportError:
        raw = _numpy_average_linkage(vectors, threshold)
    order: dict = {}
    return np.array([order.setdefault(int(r), len(order)) for r in raw], dtype=np.int64)
