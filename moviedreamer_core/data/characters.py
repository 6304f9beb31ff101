"""Naming face clusters from reference photos: ``characters/<name>/*.jpg|png`` (optional).

A cluster takes the name of the nearest reference (cosine distance between the cluster's mean face and the
mean of that name's photos) when the distance is under ``threshold``; otherwise it is ``char_00``,
``char_01``... in order of first appearance. Clusters given the same name are one character (clustering
may split a person across lighting or age; the reference joins them again). A reference folder may hold a
``description.txt``: the character's description sentence (the script's character description, paper
section 3.2). Reference photos are embedded with the same ``FaceEmbedder`` as the film's faces and are
also what the character's few-shot reference tokens are made from, as ScriptEncode does with a script's
reference photos.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..identity.base import FaceEmbedder, NoFaceFoundError, l2_normalise
from ..script.references import load_image_file
from ..text_files import TextFileError, read_text_file

log = logging.getLogger("moviedreamer.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_NAME_THRESHOLD = 0.09


@dataclass
class Reference:
    name: str
    mean: np.ndarray  # [Di] normalised mean of the photos' embeddings
    images: list = field(default_factory=list)  # uint8 photos (for reference tokens)
    description: str = ""


def load_references(folder: Optional[str], embedder: FaceEmbedder) -> list[Reference]:
    """One ``Reference`` per sub-folder of ``folder`` holding at least one photo with a face (sorted by name);
    photos without a detectable face are logged and ignored."""
    if not folder:
        return []
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"characters folder {folder!r} does not exist")
    refs = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub) or name.startswith("."):
            continue
        vectors, images = [], []
        for file in sorted(os.listdir(sub)):
            if not file.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(sub, file)
            try:
                image = load_image_file(path)
                vectors.append(embedder.embed(image))
                images.append(image)
            except NoFaceFoundError:
                log.warning("characters/%s/%s: no face found, photo ignored", name, file)
            except (OSError, ValueError) as e:
                log.warning("characters/%s/%s: cannot be read (%s), photo ignored", name, file, e)
        if not vectors:
            log.warning("characters/%s: no usable photo, the name is not used", name)
            continue
        refs.append(Reference(name, l2_normalise(np.mean(vectors, axis=0)), images, _description(sub, name)))
    return refs


#: The longest description.txt read (a description is a sentence or two; the text encoders read 77 tokens).
MAX_DESCRIPTION_BYTES = 64 * 1024


def _description(sub: str, name: str) -> str:
    """``<sub>/description.txt`` (UTF-8 text), or ``""`` when there is none; one that is not UTF-8 text, is larger
    than ``MAX_DESCRIPTION_BYTES`` or cannot be read is logged and not used (the character keeps its photos)."""
    path = os.path.join(sub, "description.txt")
    if not os.path.isfile(path):
        return ""
    try:
        return read_text_file(path, MAX_DESCRIPTION_BYTES).strip()
    except TextFileError as e:
        log.warning("characters/%s/description.txt %s, not used", name, e)
        return ""


def name_clusters(cluster_means: list[np.ndarray], references: list[Reference],
                  threshold: float = DEFAULT_NAME_THRESHOLD) -> list[str]:
    """A name per cluster: the nearest reference under ``threshold``, else ``char_NN`` (unnamed clusters are
    numbered in cluster order, skipping numbers a reference folder happens to use)."""
    taken = {r.name for r in references}
    names, counter = [], 0
    for mean in cluster_means:
        best, best_d = None, threshold
        for ref in references:
            d = 1.0 - float(np.dot(mean, ref.mean))
            if d < best_d:
                best, best_d = ref.name, d
        if best is None:
            while f"char_{counter:02d}" in taken:
                counter += 1
            best = f"char_{counter:02d}"
            counter += 1
        names.append(best)
    return names
