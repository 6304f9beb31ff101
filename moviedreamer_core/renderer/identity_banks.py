"""Which photos show the same character, and the identity bank each training sample draws from.

MovieDreamer's anti-overfitting (paper section 3.2, applied to the renderer of section 3.4 as well): the face
embedding a training sample is conditioned on comes from *a different appearance of the same character*, with
noise on top. So the renderer cannot learn "this exact embedding means this exact picture"; it must learn
"this person" from whichever photo the embedding came from, which is the situation at render time, where the
identity is the mean of a character's reference photos and the keyframe is a picture never seen.

Grouping photos into characters, in order of preference:

1. **Names.** One name per photo (the training node's ``characters`` input, or the training script's character
   sub-folders). The same name is the same character; an empty name is "nobody known".
2. **Face clustering.** Without names, the photos' face embeddings are clustered as the dataset builder clusters
   a film's faces (``data/clustering.py``: average linkage on cosine distance, cut at ``threshold``; 0.07 suits
   dlib's descriptors and leans towards splitting one person rather than merging two). ``threshold <= 0``: no
   grouping, every photo is its own character.

A sample's bank holds the identities of every *other* photo of its character (all their augmented variants);
a photo alone in its character keeps its own identity (noise only, as before). A named photo in which no face
was found still shows its character: it gets the character's identity (the normalised mean of its other photos)
and a bank, so it trains with identity too.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.clustering import DEFAULT_THRESHOLD, cluster


def character_groups(identities: Sequence[Optional[torch.Tensor]], names: Optional[Sequence[Optional[str]]] = None,
                     threshold: float = DEFAULT_THRESHOLD) -> list[Optional[int]]:
    """A character number per photo (``None``: not known), from ``names`` when given, else by clustering the
    photos' ``identities`` (L2-normalised ``[Di]``, ``None`` where no face was found) at ``threshold``."""
    n = len(identities)
    if names is not None:
        if len(names) != n:
            raise ValueError(f"{len(names)} character names for {n} photos")
        order: dict = {}
        return [order.setdefault(name.strip(), len(order)) if name and name.strip() else None for name in names]
    with_face = [i for i, v in enumerate(identities) if v is not None]
    groups: list[Optional[int]] = [None] * n
    if threshold <= 0 or not with_face:
        for g, i in enumerate(with_face):
            groups[i] = g
        return groups
    vectors = np.stack([F.normalize(identities[i].float(), dim=-1).numpy() for i in with_face])
    for i, label in zip(with_face, cluster(vectors, threshold)):
        groups[i] = int(label)
    return groups


def attach_identity_banks(samples: Sequence, photos: Sequence[int], groups: Sequence[Optional[int]]) -> dict:
    """Give every sample (``RendererSample``: ``identity``, ``bank``) of photo ``photos[s]`` the bank of its
    character's other photos, in place. ``groups[photo]`` is the photo's character (``character_groups``).

    Returns counts for the summary: ``characters`` (with identities from two or more photos), ``banked``
    (samples that draw from another photo), ``lent`` (samples without a face of their own given their
    character's identity)."""
    by_photo: dict = {}
    for s, photo in zip(samples, photos):
        if s.identity is not None:
            by_photo.setdefault(photo, []).append(s.identity.float())
    members: dict = {}
    for photo, group in enumerate(groups):
        if group is not None:
            members.setdefault(group, []).append(photo)
    banked = lent = 0
    shared = set()
    for s, photo in zip(samples, photos):
        group = groups[photo] if photo < len(groups) else None
        if group is None:
            s.bank = None
            continue
        others = [v for p in members[group] if p != photo for v in by_photo.get(p, [])]
        if not others:
            s.bank = None
            continue
        s.bank = torch.stack(others)
        if s.identity is None:
            s.identity = F.normalize(s.bank.mean(0), dim=-1)
            lent += 1
        banked += 1
        shared.add(group)
    return {"characters": len(shared), "banked": banked, "lent": lent}
