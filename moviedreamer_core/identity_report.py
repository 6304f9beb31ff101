"""The per-keyframe identity report: is each character the script puts on screen really in the rendered keyframe?

MovieDreamer's promise is identity: the same faces from keyframe to keyframe (paper sections 3.2 and 3.4). The
script's face embedder made each character's identity bank from its reference photos; the report runs the *same*
embedder over a rendered keyframe, finds every face in it (``FaceEmbedder.faces``, at most ``MAX_FACES``), and
says, per on-screen character, which face is theirs and how similar it is to their references, with flags:

* ``missing``: no face in the keyframe is recognised as this character (the face assigned to them, if any, is less
  similar to their references than ``threshold``);
* ``doubled``: two or more faces are recognised as this character (each nearer to their references than to anyone
  else's, and above ``threshold``);
* ``closer_to:<name>``: the face assigned to this character is nearer to another script character's references
  than to their own (and that other similarity is above ``threshold``): a swapped or blended identity;

and, for the keyframe, the ``extra`` faces nobody on screen explains: faces not recognised as any on-screen character
(a character the shot does not list, or a face nobody's references match). A second face of an on-screen character
is not extra: it makes that character ``doubled``.

**Similarity.** Embeddings are L2-normalised, so similarity is the cosine. A face's similarity to a character is the
highest over the character's bank (one row per reference photo): a character photographed in several looks matches
the nearest look. Characters without reference photos have no bank: they are listed as ``unchecked`` and no face is
matched to them.

**Assignment.** Faces and on-screen characters (the checked ones) are paired one to one, maximising the summed
similarity (the Hungarian method, ``scipy.optimize.linear_sum_assignment``; exact, deterministic); every character
gets a face while faces are left. A pairing is then judged by the threshold: below it the character is
``missing``, whatever face was left for them.

**Thresholds** (``DEFAULT_THRESHOLDS``, one per identity space, by the prefix of its encoder name):

* ``dlib_resnet_v1``: 0.91. dlib's documented rule is that two faces of one person lie within Euclidean distance 0.6
  of each other, on its raw descriptors, whose norm is about 1.4 (1.40-1.45 on the test photos): 0.6 / 1.42 = 0.42
  between unit vectors, i.e. cosine 1 - 0.42^2 / 2 = 0.91. On the test photos: the same person 0.98-0.99, two
  different people 0.88-0.89.
* ``insightface_``: 0.35, a cut commonly used for ArcFace face verification; a convention, not measured here
  (InsightFace is not installed in the tests).
* ``clip_vision_crop:``: 0.80. CLIP image embeddings of any two faces are fairly similar, so this is a weak check;
  the figure is a starting guess, not a measurement (pass ``threshold`` to ``KeyframeChecker`` to change it).
* ``toycinema.identity``: 0.50 (the toy identity embedder; measured on the toy world's ground-truth keyframes, see
  ``TOY_THRESHOLD``).
* anything else: ``FALLBACK_THRESHOLD`` 0.5.

The result is plain JSON data (floats rounded to 4 decimals), deterministic for an image and the script's banks,
saved in the movie project's manifest (the keyframe's ``identity`` entry) and shown in the storyboard panel.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .identity.base import MAX_FACES, Face

#: Bumped when the report's rules or layout change: a stored report of another version is made again.
REPORT_VERSION = 1
#: The toy identity embedder's threshold. On the ground-truth keyframes of the 32 films of ``counting.VALIDATION_SEED``
#: at 32 px (629 keyframes, 994 on-screen characters), a character's face is 0.59-0.99 similar to its portrait (5th
#: percentile 0.84, median 0.98) and at most 0.34 to anyone else's (99th percentile 0.28): 0.5 lies between. With it
#: 991 of the 994 are found; the 3 missing are the place reading's own 3 errors (``counting.py``).
TOY_THRESHOLD = 0.50
#: ``(encoder name prefix, cosine threshold)``, the first match wins (module docstring).
DEFAULT_THRESHOLDS: tuple[tuple[str, float], ...] = (
    ("dlib_resnet_v1", 0.91),
    ("insightface_", 0.35),
    ("clip_vision_crop:", 0.80),
    ("toycinema.identity", TOY_THRESHOLD),
)
FALLBACK_THRESHOLD = 0.5
#: Decimals kept in the report (JSON, deterministic).
DECIMALS = 4


def default_threshold(encoder: str) -> float:
    """The threshold of the identity space whose encoder is named ``encoder`` (``EmbeddingSpace.encoder``)."""
    for prefix, value in DEFAULT_THRESHOLDS:
        if encoder.startswith(prefix):
            return value
    return FALLBACK_THRESHOLD


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), DECIMALS)


def similarity_matrix(embeddings: np.ndarray, banks: Sequence[Optional[np.ndarray]]) -> np.ndarray:
    """``[F, C]``: each face's cosine to each character, the highest over the character's bank; ``-inf`` for a
    character without references. ``embeddings``: ``[F, D]`` unit vectors; ``banks``: per character ``[r, D]``."""
    e = np.asarray(embeddings, np.float32)
    out = np.full((e.shape[0], len(banks)), -np.inf, np.float32)
    for j, bank in enumerate(banks):
        if bank is not None and len(bank) and e.shape[0]:
            out[:, j] = (e @ np.asarray(bank, np.float32).T).max(1)
    return out


def assign(similarity: np.ndarray) -> list[tuple[int, int]]:
    """``(row, column)`` pairs of a one-to-one pairing with the largest summed similarity (``min(rows, columns)``
    pairs), sorted by column."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return []
    rows, cols = linear_sum_assignment(-np.asarray(similarity, np.float64))
    return sorted(zip(rows.tolist(), cols.tolist()), key=lambda p: p[1])


def identity_report(faces: Sequence[Face], on_screen: Sequence[int], names: Sequence[str],
                    banks: Sequence[Optional[np.ndarray]], threshold: float) -> dict:
    """The report of one keyframe (module docstring). ``faces``: what the embedder found; ``on_screen``: the shot's
    characters (indices into ``names``/``banks``, in script order); ``banks``: every script character's
    references (``None`` or empty: no references)."""
    on_screen = list(dict.fromkeys(on_screen))
    sim = similarity_matrix(np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 1)), banks)
    known = [j for j, b in enumerate(banks) if b is not None and len(b)]
    checked = [c for c in on_screen if c in known]

    def best(i: int, among: Sequence[int]) -> Optional[int]:
        """The character of ``among`` nearest to face ``i`` (the first in script order on a tie)."""
        return max(among, key=lambda j: (sim[i, j], -j)) if among else None

    nearest = [best(i, known) for i in range(len(faces))]
    recognised = [n is not None and sim[i, n] >= threshold for i, n in enumerate(nearest)]
    pairs = {checked[col]: row for row, col in assign(sim[:, checked])} if checked and faces else {}
    characters, flags = [], []
    for c in on_screen:
        entry = {"name": names[c], "found": None, "face": None, "box": None, "similarity": None, "other": None,
                 "other_similarity": None, "flags": []}
        if c not in checked:
            characters.append({**entry, "flags": ["unchecked"]})
            continue
        i = pairs.get(c)
        own = float(sim[i, c]) if i is not None else None
        rival = best(i, [j for j in known if j != c]) if i is not None else None
        entry.update(found=own is not None and own >= threshold, face=i, box=list(faces[i].box) if i is not None else None,
                     similarity=_r(own), other=names[rival] if rival is not None else None,
                     other_similarity=_r(sim[i, rival]) if rival is not None else None)
        if not entry["found"]:
            entry["flags"].append("missing")
            flags.append(f"{names[c]} missing" + (f" (nearest face {own:.2f})" if own is not None else " (no face)"))
        twice = sum(1 for i2, n in enumerate(nearest) if n == c and recognised[i2])
        if twice >= 2:
            entry["flags"].append("doubled")
            flags.append(f"{names[c]} doubled ({twice} faces)")
        if rival is not None and sim[i, rival] >= threshold and sim[i, rival] > own:
            entry["flags"].append(f"closer_to:{names[rival]}")
            flags.append(f"{names[c]} closer to {names[rival]} ({sim[i, rival]:.2f} vs {own:.2f})")
        characters.append(entry)
    matched = {i for c, i in pairs.items() if sim[i, c] >= threshold}
    extra = [i for i in range(len(faces))
             if i not in matched and not (recognised[i] and nearest[i] in set(on_screen))]
    face_rows = []
    for i, f in enumerate(faces):
        assigned = next((names[c] for c, i2 in pairs.items() if i2 == i), None)
        face_rows.append({"box": [int(v) for v in f.box], "score": _r(f.score),
                          "nearest": names[nearest[i]] if nearest[i] is not None else None,
                          "similarity": _r(sim[i, nearest[i]]) if nearest[i] is not None else None,
                          "assigned": assigned})
    for i in extra:
        who = f"{face_rows[i]['nearest']} {face_rows[i]['similarity']:.2f}" if recognised[i] else "nobody known"
        flags.append(f"extra face ({who})")
    return {"version": REPORT_VERSION, "threshold": _r(threshold), "faces": face_rows, "characters": characters,
            "extra": extra, "flags": flags, "ok": not flags}


@dataclass
class KeyframeChecker:
    """The report for each keyframe of a script: the script's banks and face embedder, a threshold (default: the
    identity space's, ``default_threshold``), and ``key(k)``, which names everything a stored report depends on
    besides the keyframe's pixels (so a resumed keyframe's report is reused, and made again when the references, the
    embedder or the rules changed)."""

    embeds: object  # ScriptEmbeds
    embedder: object  # FaceEmbedder
    threshold: Optional[float] = None

    def __post_init__(self):
        if self.threshold is None:
            self.threshold = default_threshold(self.embedder.space.encoder)
        self.names = [c.name for c in self.embeds.characters]
        try:  # a user's embedder written for an earlier release takes no ``expected``
            self._takes_expected = "expected" in inspect.signature(self.embedder.faces).parameters
        except (TypeError, ValueError):
            self._takes_expected = False
        self.banks = [c.bank.detach().cpu().float().numpy() if c.has_identity else None for c in self.embeds.characters]
        h = hashlib.sha256(f"{REPORT_VERSION}|{self.embedder.cache_tag}|{self.threshold!r}|{MAX_FACES}".encode())
        for name, bank in zip(self.names, self.banks):
            h.update(name.encode("utf-8") + b"\x00")
            if bank is not None:
                h.update(np.ascontiguousarray(bank, np.float32).tobytes())
            h.update(b"\x01")
        self._base = h.hexdigest()

    def key(self, k: int) -> str:
        spec = self.embeds.keyframes[k]
        return hashlib.sha256(f"{self._base}|{list(spec.characters)}|{spec.camera}".encode()).hexdigest()[:16]

    def report(self, k: int, image: np.ndarray) -> dict:
        """Keyframe ``k``'s report on its rendered ``uint8 [H, W, 3]`` image, with its ``key`` and the identity space."""
        spec = self.embeds.keyframes[k]
        hint = {"expected": len(spec.characters)} if self._takes_expected else {}
        faces = self.embedder.faces(image, camera=spec.camera, limit=MAX_FACES, **hint)
        out = identity_report(faces, list(spec.characters), self.names, self.banks, self.threshold)
        return {**out, "space": self.embedder.space.encoder, "key": self.key(k)}

    def stored(self, k: int, entry: Optional[dict]) -> Optional[dict]:
        """The report in a keyframe's manifest ``entry`` if it is still this checker's (same key), else ``None``."""
        report = (entry or {}).get("identity")
        return report if isinstance(report, dict) and report.get("key") == self.key(k) else None


def summarise(reports: Sequence[dict]) -> dict:
    """Totals over keyframe reports: on-screen characters checked, the share found, missing, doubled and closer to
    someone else, the mean similarity of the found ones, extra faces per keyframe and flagged keyframes."""
    chars = [c for r in reports for c in r["characters"] if "unchecked" not in c["flags"]]
    n = len(chars)
    share = (lambda k: sum(1 for c in chars if any(f == k or f.startswith(k + ":") for f in c["flags"])) / n) if n else (lambda k: None)
    found = [c["similarity"] for c in chars if c["found"]]
    return {"keyframes": len(reports), "characters": n,
            "found": sum(1 for c in chars if c["found"]) / n if n else None,
            "missing": share("missing"), "doubled": share("doubled"), "closer_to_other": share("closer_to"),
            "mean_similarity": float(np.mean(found)) if found else None,
            "extra_faces_per_keyframe": sum(len(r["extra"]) for r in reports) / len(reports) if reports else None,
            "flagged_keyframes": sum(1 for r in reports if not r["ok"]) / len(reports) if reports else None}


def panel_view(report: dict) -> dict:
    """What the storyboard panel shows of a report: ``ok``, the flag lines, and per character name, similarity and
    flags (no boxes or face lists: a websocket message per keyframe stays small)."""
    return {"ok": bool(report.get("ok")), "flags": list(report.get("flags", [])),
            "characters": [{"name": c["name"], "similarity": c["similarity"], "flags": c["flags"]}
                           for c in report.get("characters", [])]}
