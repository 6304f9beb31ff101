"""One video to one training movie: shots, keyframes, cast, captions, embeddings -> ``Story`` + record.

This is the paper's data preparation for the planner (arXiv 2407.16655, sections 3.2-3.3) applied to one
film: the keyframe sequence with its true visual tokens, a multimodal script per keyframe (action, scene
and style sentences, the characters on screen), and a cast whose identity banks hold every detected face
of each character (the source of training-time face-embedding randomisation, section 3.3). Each
character's few-shot reference tokens are its reference photos encoded into the token space when it was
named from ``characters/`` (as ScriptEncode does), else crops of its largest faces in the film.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..embeds import SEGMENTS
from ..identity.base import FaceEmbedder
from ..planner.inputs import Story
from ..script.mentions import keyframe_mentions
from ..script_encoding import TextEncoder, TokenEncoder, mention_tensors
from . import video
from .captions import Captioner, load_sidecar, sidecar_text
from .characters import Reference, name_clusters
from .clustering import cluster
from .faces import find_faces, square_crop
from .keyframes import laplacian_variance, pick_keyframes
from .shots import ShotDetector


@dataclass(frozen=True)
class MovieSettings:
    keyframes_per_shot: int = 1
    shot_threshold: float = 27.0
    min_shot_seconds: float = 0.5
    face_min_score: float = 0.5
    cluster_threshold: float = 0.07
    name_threshold: float = 0.09
    min_appearances: int = 1  # a cluster seen in fewer keyframes is dropped (false detections, extras)
    bank_size: int = 16  # identity embeddings kept per character (spread over the film)
    references_per_character: int = 2  # few-shot reference tokens per character (0: none)


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _encode_texts(encoder: TextEncoder, texts: list[str]) -> tuple[torch.Tensor, dict]:
    unique = list(dict.fromkeys(texts))
    vectors = encoder.encode(unique).detach().to("cpu", torch.float32)
    if vectors.shape != (len(unique), encoder.space.dim):
        raise RuntimeError(f"text encoder returned shape {tuple(vectors.shape)}, expected [{len(unique)}, {encoder.space.dim}]")
    return vectors, {t: i for i, t in enumerate(unique)}


def build_movie(path: str, *, text_encoder: TextEncoder, token_encoder: TokenEncoder, face_embedder: FaceEmbedder,
                references: list[Reference], captioner: Optional[Captioner] = None,
                settings: MovieSettings = MovieSettings()) -> tuple[Story, list[str], dict]:
    """``(story, character_names, record)`` for the video at ``path``; ``video.VideoReadError`` when it
    cannot be decoded. ``record`` is JSON-able: shots, keyframes (frame, time, texts, characters, face
    boxes), cast and caption source."""
    t0 = time.time()
    sidecar = load_sidecar(path)

    # --- pass 1: shots and sharpness, at scan size
    state: dict = {}
    sharp: list[float] = []

    def on_frame(i: int, bgr: np.ndarray) -> None:
        if "detector" not in state:
            state["detector"] = ShotDetector(state["fps"], settings.shot_threshold, settings.min_shot_seconds)
        state["detector"].push(i, bgr)
        sharp.append(laplacian_variance(bgr))

    state["fps"] = _probe_fps(path)
    info = video.scan(path, on_frame)
    shots = state["detector"].shots(info.frames)
    picks = pick_keyframes(shots, np.asarray(sharp), settings.keyframes_per_shot)

    # --- pass 2: the keyframes at full resolution, their faces
    frames = video.grab(path, [f for _, f in picks])
    images = [frames[f] for _, f in picks]
    del frames
    faces = [find_faces(im, face_embedder, settings.face_min_score) for im in images]

    # --- cast: cluster every face of the film, name clusters, drop rare ones
    flat = [(k, j) for k, fs in enumerate(faces) for j in range(len(fs))]
    labels = cluster(np.stack([faces[k][j].vector for k, j in flat]) if flat else np.zeros((0, 1)), settings.cluster_threshold)
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    members = [[flat[i] for i in np.flatnonzero(labels == c)] for c in range(n_clusters)]
    means = [np.mean([faces[k][j].vector for k, j in m], axis=0) for m in members]
    means = [m / max(float(np.linalg.norm(m)), 1e-8) for m in means]
    names = name_clusters(means, references, settings.name_threshold)
    cast: dict[str, list] = {}
    for name, m in zip(names, members):
        cast.setdefault(name, []).extend(m)  # clusters named alike are one character
    cast = {n: sorted(m) for n, m in cast.items() if len({k for k, _ in m}) >= settings.min_appearances}
    character_names = sorted(cast, key=lambda n: cast[n][0])  # order of first appearance
    index_of = {n: c for c, n in enumerate(character_names)}
    face_owner = {kj: index_of[n] for n, m in cast.items() for kj in m}

    # --- texts: sidecar, else captioner, else empty
    fps = info.fps
    ref_by_name = {r.name: r for r in references}
    descriptions = [sidecar.characters.get(n) or (ref_by_name[n].description if n in ref_by_name else "") for n in character_names]
    keyframe_records, actions, scenes = [], [], []
    for k, (s, f) in enumerate(picks):
        on_screen = list(dict.fromkeys(face_owner[(k, j)] for j in range(len(faces[k])) if (k, j) in face_owner))
        span = (info.time(shots[s][0]), info.time(shots[s][1]))  # the frames' own times (variable frame rates)
        entry = sidecar_text(sidecar, s, span, info.time(f))
        source = sidecar.kind if entry is not None else "none"
        if entry is None and captioner is not None:
            context = {"video": path, "shot": s, "keyframe": k, "time": info.time(f),
                       "characters": [character_names[c] for c in on_screen], "subtitle": None}
            entry, source = {"action": str(captioner(images[k], context)), "scene": ""}, "captioner"
        entry = entry or {"action": "", "scene": ""}
        actions.append(entry["action"])
        scenes.append(entry["scene"])
        keyframe_records.append({"shot": s, "frame": f, "time": round(info.time(f), 3), "action": entry["action"],
                                 "scene": entry["scene"], "caption_source": source,
                                 "characters": [character_names[c] for c in on_screen],
                                 "faces": [{"box": list(fc.box), "score": round(fc.score, 3),
                                            "character": character_names[face_owner[(k, j)]] if (k, j) in face_owner else None}
                                           for j, fc in enumerate(faces[k])]})
        keyframe_records[-1]["_cast"] = on_screen

    # what each action says of each character on screen, as ScriptEncode gives the planner (planner input
    # ``mentions``): only where the captions write the characters' names (a sidecar that names them); a caption
    # that names nobody gives none, and a dataset without any trains a planner that does not read them
    mentions = [keyframe_mentions(a, character_names, r["_cast"]) for a, r in zip(actions, keyframe_records)]
    mention_texts = [m for ms in mentions for m in ms if m is not None]
    vectors, row = _encode_texts(text_encoder, actions + scenes + [sidecar.style] + descriptions + mention_texts)
    n = len(picks)
    mention_text, mention_present = mention_tensors(mentions, lambda texts: vectors[[row[t] for t in texts]],
                                                    text_encoder.space.dim)
    style = vectors[row[sidecar.style]]
    keyframe_text = torch.stack([vectors[[row[a] for a in actions]], vectors[[row[s] for s in scenes]],
                                 style.expand(n, -1)], dim=1)
    assert keyframe_text.shape[1] == len(SEGMENTS)
    desc = vectors[[row[d] for d in descriptions]] if descriptions else torch.zeros(0, text_encoder.space.dim)

    # --- tokens: the keyframes, and each character's references
    tokens = token_encoder.encode(images).detach().to("cpu", torch.float32)
    expected = (n, token_encoder.space.K, token_encoder.space.D)
    if tuple(tokens.shape) != expected:
        raise RuntimeError(f"token encoder returned shape {tuple(tokens.shape)}, expected {list(expected)}")
    banks, ref_tokens = [], []
    for name in character_names:
        ms = cast[name]
        banks.append(torch.from_numpy(np.stack([faces[k][j].vector for k, j in _spread(ms, settings.bank_size)])))
        if settings.references_per_character > 0:
            if name in ref_by_name:
                ref_images = ref_by_name[name].images[:settings.references_per_character]
            else:
                largest = sorted(ms, key=lambda kj: -faces[kj[0]][kj[1]].area)[:settings.references_per_character]
                ref_images = [square_crop(images[k], faces[k][j].box) for k, j in largest]
            ref_tokens.append(token_encoder.encode(ref_images).detach().to("cpu", torch.float32))

    casts = [tuple(r.pop("_cast")) for r in keyframe_records]
    story = Story(style=style, descriptions=desc, identity_banks=banks, keyframe_text=keyframe_text,
                  keyframe_characters=casts, tokens=tokens,
                  reference_tokens=ref_tokens if settings.references_per_character > 0 else None,
                  **({"keyframe_mentions": mention_text, "mention_present": mention_present} if mention_present.any() else {}))
    record = {
        "source": os.path.basename(path), "frames": info.frames, "fps": round(fps, 4), "width": info.width, "height": info.height,
        "shots": [{"start": a, "end": b} for a, b in shots], "keyframes": keyframe_records,
        "characters": [{"name": nm, "description": d, "faces": len(cast[nm]),
                        "keyframes": len({k for k, _ in cast[nm]}), "named": nm in ref_by_name}
                       for nm, d in zip(character_names, descriptions)],
        "captions": sidecar.kind if sidecar.kind != "none" else ("captioner" if captioner is not None else "none"),
        "seconds": round(time.time() - t0, 2),
    }
    return story, character_names, record


def _probe_fps(path: str) -> float:
    """The stream's frame rate from the container header (needed before the first frame, for the detector)."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise video.VideoReadError("no video stream")
            stream = container.streams.video[0]
            return float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    except video.VideoReadError:
        raise
    except Exception as e:
        raise video.VideoReadError(f"{type(e).__name__}: {e}") from e
