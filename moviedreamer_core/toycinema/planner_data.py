"""Toy films as planner data: script embeddings exactly as ScriptEncode makes them, and the planner dataset.

* ``film_embeds``: a film's script (``film_script.script_data(film, "indices")``, the cast's reference portraits
  as the IMAGE batch) validated and encoded with ``script_encoding.encode_script``, the very calls of the
  ScriptEncode node: same sentence layout (action, scene, style per keyframe; one description per character),
  same identity bank (one embedding per reference portrait), reference tokens when a token encoder is given.
* ``film_story``: the planner's training view of a film (``story_from_embeds``) with the true tokens of its
  keyframes (``Film.images(keyframe_size)`` through the keyframe tokenizer).
* ``write_planner_dataset``: films written in the planner dataset format (``planner.train.save_movie`` /
  ``write_index``, spaces as ``data.build.spaces_of`` writes them), so
  ``python -m moviedreamer_core.train planner --config tiny data.path=<folder>`` trains on it. Held-out films
  (``held_out``) are written too and listed in ``toycinema.json`` for ``data.val_movies``.

Ablation switches, shared by the dataset and by planning (``planner_runs.plan_films``):

* ``identities=False`` ("no identity embeddings"): the script names no reference images, so every identity
  bank is empty (what ScriptEncode gives for a script without references) and there are no reference tokens;
  the characters' descriptions remain, as they would in such a script.
* ``references=True``: the characters' reference tokens (their portraits through the token encoder) enter the
  header as few-shot references. Off by default: the toy planner's identity path is the identity embedding.
* ``names="per_film"`` (the dataset's default): the cast gets names drawn per film (``film_names``), so that a
  name carries no look from film to film. The world's fixed names (``names="world"``, ``film_embeds``'s
  default, the script exactly as ``film_script`` writes it) let a planner read a character's look off its name
  in the action sentences, which makes identity embeddings redundant.

Sentences repeat a lot in the toy world (six scenes, one style, six descriptions, a few hundred action
lines), so ``cached_text_encoder`` wraps a text encoder with a dictionary: every distinct sentence is encoded
once, which makes building hundreds of films with the real all-MiniLM-L6-v2 take seconds.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..embeds import ScriptEmbeds
from ..files import atomic_write_text
from ..identity.base import FaceEmbedder
from ..planner.inputs import Story, story_from_embeds
from ..planner.train import save_movie, write_index
from ..script import validate_script
from ..script_encoding import TextEncoder, TokenEncoder, encode_script
from ..text_files import read_json_object
from .film import Film
from .film_script import REFERENCE_SIZE, script_data
from .render import render_reference
from .world import CHARACTERS

#: The manifest a toy dataset folder holds next to ``index.json``.
MANIFEST = "toycinema.json"
#: The largest ``toycinema.json`` (or ``planner_runs.RUN_FILE``) read: a manifest lists a toy dataset's film files (tens
#: of kB for a thousand films), a run record is a few hundred bytes, so 16 MB is generous; a damaged or foreign file is
#: refused naming it instead of being read whole.
MAX_TOY_JSON_BYTES = 16 * 2**20


# ------------------------------------------------------------------------------------------ sentences


class _SentenceCache:
    """``encode`` with memory: sentences already seen come from the dictionary, the rest in one batched call."""

    def __init__(self, encode: Callable[[list[str]], torch.Tensor]):
        self.inner = encode
        self.vectors: dict[str, torch.Tensor] = {}
        self.calls = 0  # batched calls of the wrapped encoder
        self.seconds = 0.0  # time spent in it

    def prefetch(self, texts: Sequence[str]) -> None:
        """Encode every sentence not seen yet, in one call (the wrapped encoder batches it)."""
        self(list(texts))

    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if new:
            t0 = time.perf_counter()
            out = self.inner(new).detach().to("cpu", torch.float32)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            for text, vec in zip(new, out):
                self.vectors[text] = vec.clone()
        if not texts:
            dim = next(iter(self.vectors.values())).shape[0] if self.vectors else 0
            return torch.zeros(0, dim)
        return torch.stack([self.vectors[t] for t in texts])


def cached_text_encoder(text_encoder: TextEncoder) -> TextEncoder:
    """The same encoder (same declared space) with a sentence cache; a cached encoder is returned as is.

    A sentence's vector is computed once, in whatever batch it first appears; with padding a transformer's
    output for a sentence can differ in the last float bits from batch to batch, so a cached vector equals a
    fresh one up to about 1e-6, not bit for bit."""
    if isinstance(text_encoder.encode, _SentenceCache):
        return text_encoder
    return TextEncoder(encode=_SentenceCache(text_encoder.encode), space=text_encoder.space)


# ------------------------------------------------------------------------------------------ names

#: Names given to the cast with ``names="per_film"`` (none of them a name of ``world.CHARACTERS``).
NAME_POOL = ("Mira", "Tom", "Lena", "Omar", "Ivy", "Noah", "Zoe", "Finn", "Ruth", "Sam", "Nia", "Leo", "Kai", "Ada", "Max",
             "June", "Rex", "Lou", "Ines", "Otto", "Pia", "Hugo", "Yara", "Ben")
NAMES = ("world", "per_film")


def film_names(film: Film, names: str = "world") -> dict[str, str]:
    """World name -> the name the film's script uses. ``"world"``: the catalogue's names (Ava is always the round
    red figure, in every film). ``"per_film"``: distinct names drawn from ``NAME_POOL`` with the film's seed, so a
    name says nothing about a look across films and only the identity embedding (and the description) can."""
    if names not in NAMES:
        raise ValueError(f"names must be one of {NAMES}, got {names!r}")
    world = [CHARACTERS[c].name for c in film.cast]
    if names == "world":
        return {n: n for n in world}
    rng = np.random.default_rng([int(film.seed), 7919])
    drawn = rng.choice(len(NAME_POOL), size=len(world), replace=False)
    return {n: NAME_POOL[int(i)] for n, i in zip(world, drawn)}


def film_script_data(film: Film, references: str = "indices", names: str = "world") -> dict:
    """``film_script.script_data(film, references)`` with the cast renamed as ``film_names(film, names)`` says
    (character entries, shot casts and every whole-word mention in the action sentences)."""
    data = script_data(film, references)
    mapping = film_names(film, names)
    if all(k == v for k, v in mapping.items()):
        return data
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in mapping) + r")\b")

    def rename(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    for entry in data["characters"]:
        entry["name"] = mapping[entry["name"]]
    for shot in data["shots"]:
        shot["characters"] = [mapping[n] for n in shot["characters"]]
        shot["action"] = [rename(a) for a in shot["action"]] if isinstance(shot["action"], list) else rename(shot["action"])
    return data


# ------------------------------------------------------------------------------------------ one film


@functools.lru_cache(maxsize=None)
def _portrait(character: int, size: int) -> np.ndarray:
    image = render_reference(character, size)
    image.setflags(write=False)
    return image


def reference_images(film: Film, size: int = REFERENCE_SIZE) -> np.ndarray:
    """``film_script.reference_batch(film, size)`` (same bytes), with each character's portrait rendered once
    per process: ``uint8 [n_cast, size, size, 3]``."""
    if not film.cast:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([_portrait(c, size) for c in film.cast])


def image_batch(images: np.ndarray) -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` as ComfyUI's IMAGE (float ``[B, H, W, 3]`` in 0..1), what ScriptEncode receives;
    ``script.references.image_tensor_to_uint8`` turns each entry back into the same bytes."""
    return torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0


def script_sentences(film: Film, *, names: str = "world") -> list[str]:
    """Every sentence ``encode_script`` encodes for the film's script (actions, scenes, style, descriptions)."""
    script = validate_script(film_script_data(film, "none", names), image_count=0)
    keyframes = script.keyframes()
    return [k.action for k in keyframes] + [k.scene for k in keyframes] + [script.style] + \
        [c.description for c in script.characters]


def film_embeds(film: Film, text_encoder: TextEncoder, face_embedder: FaceEmbedder,
                token_encoder: Optional[TokenEncoder] = None, *, identities: bool = True, names: str = "world",
                swap: Optional[tuple[int, int]] = None) -> ScriptEmbeds:
    """The film's ``MD_SCRIPT_EMBEDS`` as the ScriptEncode node computes it: the script with ``references: [i]``
    into the cast's portrait batch, validated against that batch and encoded with ``encode_script``.
    ``token_encoder`` adds the characters' reference tokens. ``identities=False``: the script names no
    references (empty identity banks, no reference tokens). ``names``: see ``film_names`` (``"world"``: the script
    exactly as ``film_script.script_data`` writes it). ``swap``: two character ids of the cast whose reference
    portraits are exchanged (the identity-swap test: the script's words stay, the faces trade places)."""
    if identities:
        images = reference_images(film)
        if swap is not None:
            a, b = (film.cast.index(c) for c in swap)
            images = images.copy()
            images[[a, b]] = images[[b, a]]
        batch = image_batch(images)
        script = validate_script(film_script_data(film, "indices", names), image_count=int(batch.shape[0]))
        return encode_script(script, text_encoder, face_embedder, batch=batch, token_encoder=token_encoder)
    script = validate_script(film_script_data(film, "none", names), image_count=0)
    return encode_script(script, text_encoder, face_embedder)


def keyframe_tokens(film: Film, token_encoder: TokenEncoder, keyframe_size: int = 32) -> torch.Tensor:
    """True tokens ``[N, K, D]`` of the film's keyframes (rendered at ``keyframe_size``)."""
    tokens = token_encoder.encode(list(film.images(keyframe_size))).detach().to("cpu", torch.float32)
    expected = (film.n_keyframes, token_encoder.space.K, token_encoder.space.D)
    if tuple(tokens.shape) != expected:
        raise RuntimeError(f"token encoder returned shape {tuple(tokens.shape)}, expected {list(expected)}")
    return tokens


def film_story(film: Film, text_encoder: TextEncoder, face_embedder: FaceEmbedder, token_encoder: TokenEncoder, *,
               identities: bool = True, references: bool = False, names: str = "world", keyframe_size: int = 32) -> Story:
    """A training story: ``story_from_embeds(film_embeds(...), tokens=<true keyframe tokens>)``. Without
    ``references`` the story carries no reference tokens (``Story.reference_tokens`` is None)."""
    embeds = film_embeds(film, text_encoder, face_embedder, token_encoder if references else None, identities=identities,
                         names=names)
    return story_from_embeds(embeds, tokens=keyframe_tokens(film, token_encoder, keyframe_size))


# ------------------------------------------------------------------------------------------ dataset


def spaces_of(text_encoder: TextEncoder, face_embedder: FaceEmbedder, token_encoder: TokenEncoder) -> dict:
    """The spaces dict of the dataset format (as ``data.build.spaces_of``)."""
    return {"text_space": text_encoder.space.to_dict(), "identity_space": face_embedder.space.to_dict(),
            "token_space": token_encoder.space.to_dict()}


@dataclass
class ToyDataset:
    """What ``write_planner_dataset`` wrote: the folder, the training and held-out movie names (as in
    ``index.json``), the spaces, the options and the time each part took (seconds)."""

    folder: str
    train: list
    val: list
    spaces: dict
    options: dict
    timing: dict = field(default_factory=dict)

    @property
    def movies(self) -> list:
        return self.train + self.val


def read_manifest(folder: str) -> dict:
    """``toycinema.json`` of a toy dataset folder (``{"train": [...], "val": [...], "options": {...}, ...}``), read
    bounded; a ``ValueError`` naming the file when it cannot be read or is not a JSON object (json's own message, or a
    RecursionError, named none)."""
    path = os.path.join(folder, MANIFEST)
    return read_json_object(path, MAX_TOY_JSON_BYTES)


def write_planner_dataset(films: Sequence[Film], out_folder: str, text_encoder: TextEncoder, face_embedder: FaceEmbedder,
                          token_encoder: TokenEncoder, *, held_out: Sequence[Film] = (), identities: bool = True,
                          references: bool = False, names: str = "per_film", keyframe_size: int = 32,
                          log: Optional[Callable[[str], None]] = print) -> ToyDataset:
    """Write ``films`` (training) and ``held_out`` (the trainer's ``data.val_movies``) as a planner dataset.

    Layout: ``index.json`` + ``movies/train_XXXX.safetensors`` / ``movies/val_XXXX.safetensors`` (planner/train.py's
    format) + ``toycinema.json`` (film seeds, the split, the options and the timing). The text encoder is
    wrapped with ``cached_text_encoder``. Returns a ``ToyDataset``; ``log`` (None: silent) gets a timing line.

    ``names="per_film"`` (the default here; see ``film_names``): in the toy world a name always comes with the
    same look, so with the catalogue's names a planner learns "Ava" -> round red figure from the action
    sentences and never needs the identity embeddings (measured: a planner trained that way ignores swapped
    identities completely); with names drawn per film, identity has to come from the script's identity
    embeddings (or the description), as with real casts.
    """
    t_start = time.perf_counter()
    text = cached_text_encoder(text_encoder)
    spaces = spaces_of(text, face_embedder, token_encoder)
    os.makedirs(os.path.join(out_folder, "movies"), exist_ok=True)
    timing = {"render": 0.0, "tokens": 0.0, "script": 0.0, "write": 0.0}
    written: dict[str, list] = {"train": [], "val": []}
    seeds: dict[str, list] = {"train": [], "val": []}
    n_keyframes = 0
    text_seconds_before = text.encode.seconds
    t0 = time.perf_counter()
    text.encode.prefetch([s for group in (films, held_out) for film in group for s in script_sentences(film, names=names)])
    timing["script"] += time.perf_counter() - t0
    for tag, group in (("train", films), ("val", held_out)):
        for i, film in enumerate(group):
            t0 = time.perf_counter()
            film.images(keyframe_size)
            t1 = time.perf_counter()
            tokens = keyframe_tokens(film, token_encoder, keyframe_size)
            t2 = time.perf_counter()
            embeds = film_embeds(film, text, face_embedder, token_encoder if references else None, identities=identities,
                                 names=names)
            story = story_from_embeds(embeds, tokens=tokens)
            t3 = time.perf_counter()
            name = f"movies/{tag}_{i:04d}.safetensors"
            save_movie(os.path.join(out_folder, name), story, spaces, [c.name for c in embeds.characters])
            t4 = time.perf_counter()
            timing["render"] += t1 - t0
            timing["tokens"] += t2 - t1
            timing["script"] += t3 - t2
            timing["write"] += t4 - t3
            written[tag].append(name)
            seeds[tag].append(int(film.seed))
            n_keyframes += film.n_keyframes
    timing["text_encoder"] = text.encode.seconds - text_seconds_before  # part of "script"
    write_index(out_folder, written["train"] + written["val"], spaces)
    options = {"identities": bool(identities), "references": bool(references), "names": names,
               "keyframe_size": int(keyframe_size)}
    timing["total"] = time.perf_counter() - t_start
    manifest = {"format": 1, "train": written["train"], "val": written["val"], "seeds": seeds, "options": options,
                "spaces": spaces, "sentences": len(text.encode.vectors), "keyframes": n_keyframes,
                "timing": {k: round(v, 3) for k, v in timing.items()}}
    atomic_write_text(os.path.join(out_folder, MANIFEST), json.dumps(manifest, indent=1))
    if log is not None:
        log(f"toy planner dataset {out_folder}: {len(films)} training + {len(held_out)} held-out films, {n_keyframes} "
            f"keyframes, {len(text.encode.vectors)} distinct sentences; {timing['total']:.1f} s (render "
            f"{timing['render']:.1f}, tokens {timing['tokens']:.1f}, script {timing['script']:.1f} of which text encoder "
            f"{timing['text_encoder']:.1f}, write {timing['write']:.1f})")
    return ToyDataset(out_folder, written["train"], written["val"], spaces, options, timing)
