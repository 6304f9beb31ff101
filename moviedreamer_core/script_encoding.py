"""Turn a validated ``Script`` into ``ScriptEmbeds`` (what the ScriptEncode node does, minus the host).

The encoders arrive as plain callables, so this module never touches the host: ``nodes/`` wraps the host's
CLIP text encoder and CLIP-Vision model into them, tests pass tiny real encoders.

Text: every distinct sentence of the script (each keyframe's action, each scene, the style, each
character description) is encoded once, in one batched call, and indexed back (MovieDreamer uses one
embedding per sentence, paper section 3.2). Identity: every reference photo goes through the chosen face
embedder, through an on-disk cache keyed by the image's pixels, so re-queuing the same references costs
nothing. A reference without a detectable face is an error naming the character and the image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .distribution.split import outlines_of_script
from .embeds import SEGMENTS, CharacterEmbeds, ScriptEmbeds
from .identity.base import FaceEmbedder, NoFaceFoundError, l2_normalise
from .paths import resolve_inside
from .script.hashing import script_hash
from .script.limits import MAX_REFERENCE_PIXELS
from .script.mentions import keyframe_mentions
from .script.references import image_tensor_to_uint8, load_image_file
from .script.schema import Script
from .spaces import EmbeddingSpace, TokenSpace

#: ``progress(done, total)``; may raise to interrupt (the host's cancel).
ProgressFn = Callable[[int, int], None]
#: Sentences per text encoder call (a multiple of the encoders' own batches, 64 and 32: a script of fewer sentences
#: is encoded exactly as in one call); progress, and so the host's cancel, is reported between calls.
TEXT_CHUNK = 512
#: Sentences per call to an encoder that encodes each sentence by itself (``TextEncoder.per_sentence``: its vectors do
#: not depend on how the sentences are split into calls). The built-in MiniLM takes some 20 ms a sentence on one idle
#: thread, and 512 a call kept Cancel waiting 48 s on a busy machine (an audit); 32 a call answers within a second or two.
SENTENCE_CHUNK = 32


@dataclass(frozen=True)
class TextEncoder:
    """Sentences to vectors: ``encode(list_of_texts) -> Tensor[N, dim]`` in ``space``."""

    encode: Callable[[list[str]], torch.Tensor]
    space: EmbeddingSpace
    #: Each sentence is encoded by itself, so splitting the sentences into smaller calls changes no vector
    #: (``sentence_encoders.transformers_text_encoder(alone=True)``): called ``SENTENCE_CHUNK`` at a time.
    per_sentence: bool = False


@dataclass(frozen=True)
class TokenEncoder:
    """Images to visual tokens: ``encode(list_of_uint8_images) -> Tensor[N, K, D]`` in ``space``."""

    encode: Callable[[list[np.ndarray]], torch.Tensor]
    space: TokenSpace


class ReferenceImageError(ValueError):
    """Reference photos that could not be used; the message lists each by character and image."""


@dataclass(frozen=True)
class ReferenceImage:
    character: int
    position: int  # index in the character's ``references`` list
    label: str  # "file:ava.png" or "batch:0"
    image: np.ndarray  # uint8 [H, W, 3]


def gather_references(script: Script, input_dir: Optional[str], batch: Optional[Sequence] = None) -> list[ReferenceImage]:
    """Load every character's reference photos: files from ``input_dir``, indices from ``batch``.

    ``batch`` is the IMAGE input (a tensor ``[B, H, W, C]`` or a sequence of images). The script was
    validated against the same folder and batch size, so problems here are races (a file deleted since),
    reported the same way.
    """
    out: list[ReferenceImage] = []
    decoded: dict[str, np.ndarray] = {}  # each file once, however many references name it (the script's total pixels
    # were checked against MAX_TOTAL_REFERENCE_PIXELS file by file)
    converted: dict[int, np.ndarray] = {}  # each image of the batch once, however many references name it: 256
    # characters x 16 references of [0] converted the same image 4096 times (1.5 GB for a 512 px image: an audit)
    for c, ch in enumerate(script.characters):
        for j, ref in enumerate(ch.references):
            if isinstance(ref, int):
                if batch is None or ref >= len(batch):
                    raise ReferenceImageError(f'characters[{c}] "{ch.name}": references[{j}] is image {ref}, but the IMAGE batch has {0 if batch is None else len(batch)}')
                if ref not in converted:
                    height, width = int(batch[ref].shape[0]), int(batch[ref].shape[1])
                    if height * width > MAX_REFERENCE_PIXELS:  # the same limit as a file's
                        raise ReferenceImageError(
                            f'characters[{c}] "{ch.name}": references[{j}] is image {ref} of the IMAGE batch, {width}x{height} '
                            f"pixels: more than {MAX_REFERENCE_PIXELS // 1_000_000} megapixels, the limit of a reference photo")
                    converted[ref] = image_tensor_to_uint8(batch[ref])
                out.append(ReferenceImage(c, j, f"batch:{ref}", converted[ref]))
            else:
                if input_dir is None:
                    raise ReferenceImageError(f'characters[{c}] "{ch.name}": references[{j}] names a file but no input folder was given')
                path = resolve_inside(input_dir, ref)
                try:
                    if path not in decoded:
                        decoded[path] = load_image_file(path)
                except (OSError, ValueError) as e:
                    raise ReferenceImageError(f'characters[{c}] "{ch.name}": references[{j}] ({ref}) cannot be read: {e}') from e
                out.append(ReferenceImage(c, j, f"file:{ref}", decoded[path]))
    return out


def _embed_identities(script: Script, refs: list[ReferenceImage], embedder: FaceEmbedder, cache, progress) -> np.ndarray:
    """Embed every reference; collect *all* faceless references into one error before giving up."""
    if not refs:
        return np.zeros((0, embedder.space.dim), dtype=np.float32)
    embed_one = (lambda im: cache.get_or_compute(embedder, im)) if cache is not None else embedder.embed
    vectors, failures = [], []
    known: dict[int, Optional[np.ndarray]] = {}  # each picture (gather_references: one array a file or batch image)
    # embedded once, however many references name it (None: no face found in it)
    for i, ref in enumerate(refs):
        if id(ref.image) not in known:
            try:
                known[id(ref.image)] = np.asarray(embed_one(ref.image), dtype=np.float32)
            except NoFaceFoundError:
                known[id(ref.image)] = None
        if known[id(ref.image)] is not None:
            vectors.append(known[id(ref.image)])
        else:
            name = script.characters[ref.character].name
            failures.append(f'character "{name}" (characters[{ref.character}]), reference {ref.position} ({ref.label}): no face found')
        if progress is not None:
            progress(i + 1, len(refs))
    if failures:
        raise ReferenceImageError(
            "no face could be found in " + ("this reference image" if len(failures) == 1 else f"{len(failures)} reference images")
            + ":\n  " + "\n  ".join(failures)
            + "\nUse a clearer, front-facing photo, or choose the clip_vision_crop face embedder (it needs no face detector)."
        )
    return np.stack(vectors)


def mention_tensors(mentions: list, embed, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ScriptEmbeds.mention_text [N, M, Dt]`` and ``mention_present [N, M]`` from each keyframe's mention texts
    (``script.mentions.keyframe_mentions``, one entry per character on screen, ``None`` where not named); ``M`` is
    the most characters any keyframe shows, absent entries are zero rows. ``embed(texts) -> [len(texts), dim]``.
    ScriptEncode and the training-data builder (``data/movie.py``) both make them here."""
    width = max([len(ms) for ms in mentions] + [0])
    text = torch.zeros(len(mentions), width, dim)
    present = torch.zeros(len(mentions), width, dtype=torch.bool)
    at = [(i, p, m) for i, ms in enumerate(mentions) for p, m in enumerate(ms) if m is not None]
    if at:
        rows, places, texts = zip(*at)
        text[list(rows), list(places)] = embed(list(texts))
        present[list(rows), list(places)] = True
    return text, present


def _content_hash(parts: list) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().to("cpu", torch.float32).contiguous()
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(repr(p).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def encode_script(
    script: Script,
    text_encoder: TextEncoder,
    face_embedder: FaceEmbedder,
    *,
    input_dir: Optional[str] = None,
    batch: Optional[Sequence] = None,
    identity_cache=None,
    token_encoder: Optional[TokenEncoder] = None,
    face_encoder: Optional[TokenEncoder] = None,
    progress: Optional[ProgressFn] = None,
) -> ScriptEmbeds:
    """Encode a validated script. ``identity_cache`` is an ``IdentityCache`` (or ``None`` for no cache).

    ``face_encoder`` (optional) encodes each reference's face crop (``face_embedder.face_crop``) into
    ``CharacterEmbeds.face_states``, for FaceID-plus renderers.

    Progress counts one step per reference image plus one per ``TEXT_CHUNK`` (``SENTENCE_CHUNK``) sentences of the text pass (and one per character's
    reference tokens when a token encoder is given).
    """
    refs = gather_references(script, input_dir, batch)
    keyframes = script.keyframes()
    sentences = [k.action for k in keyframes] + [k.scene for k in keyframes] + [script.style]
    sentences += [c.description for c in script.characters]
    names = [c.name for c in script.characters]
    mentions = [keyframe_mentions(k.action, names, k.characters) for k in keyframes]
    sentences += [m for ms in mentions for m in ms if m is not None]
    unique = list(dict.fromkeys(sentences))
    size = SENTENCE_CHUNK if text_encoder.per_sentence else TEXT_CHUNK
    chunks = [unique[i:i + size] for i in range(0, len(unique), size)]  # never none: the style is one
    n_token_steps = len(script.characters) * ((token_encoder is not None) + (face_encoder is not None))
    total = len(refs) + len(chunks) + n_token_steps
    report = (lambda done: progress(done, total)) if progress is not None else (lambda done: None)

    # --- identity (first: it is where user errors show up, before the batched text pass)
    bank_all = _embed_identities(script, refs, face_embedder, identity_cache, lambda d, _t: report(d))
    banks: list[list[np.ndarray]] = [[] for _ in script.characters]
    labels: list[list[str]] = [[] for _ in script.characters]
    for ref, vec in zip(refs, bank_all):
        banks[ref.character].append(vec)
        labels[ref.character].append(ref.label)
    check = getattr(face_embedder, "reference_problems", None)  # an embedder that knows its characters (the toy's)
    warnings = tuple(w for c, ch in enumerate(script.characters) if check is not None and banks[c]
                     for w in check(ch.name, np.stack(banks[c]), labels[c]))

    # --- text: every distinct sentence once, in batched calls of TEXT_CHUNK sentences, progress (and so the host's
    # cancel) between them: a script of 20,000 keyframes kept the built-in encoder busy a minute, deaf to Cancel
    parts = []
    for c, chunk in enumerate(chunks):
        parts.append(text_encoder.encode(chunk).detach().to("cpu", torch.float32))
        if c < len(chunks) - 1:
            report(len(refs) + c + 1)
    vectors = torch.cat(parts)
    if vectors.ndim != 2 or vectors.shape[0] != len(unique) or vectors.shape[1] != text_encoder.space.dim:
        raise RuntimeError(
            f"text encoder returned shape {tuple(vectors.shape)}, expected [{len(unique)}, {text_encoder.space.dim}]"
        )
    row = {text: i for i, text in enumerate(unique)}
    embed = lambda texts: vectors[[row[t] for t in texts]]  # noqa: E731
    style_embed = embed([script.style])[0]
    keyframe_text = torch.stack(
        [embed([k.action for k in keyframes]), embed([k.scene for k in keyframes]),
         style_embed.expand(len(keyframes), -1)],
        dim=1,
    ) if keyframes else torch.zeros(0, len(SEGMENTS), text_encoder.space.dim)
    description_embeds = embed([c.description for c in script.characters]) if script.characters else torch.zeros(0, text_encoder.space.dim)
    mention_text, mention_present = mention_tensors(mentions, embed, text_encoder.space.dim)
    done = len(refs) + len(chunks)
    report(done)

    # --- optional reference tokens (the character's photos in the keyframe token space)
    characters = []
    dim = face_embedder.space.dim
    # characters whose references are the very same pictures (gather_references: one array a file or batch image)
    # share one encoding: 256 characters x 16 references of [0] ran CLIP Vision and the face crop 4096 times on one
    # picture (a review). Keyed by the whole list, so every other character is encoded exactly as before.
    token_done: dict[tuple, torch.Tensor] = {}
    face_done: dict[tuple, torch.Tensor] = {}
    for c, ch in enumerate(script.characters):
        bank = torch.from_numpy(np.stack(banks[c])) if banks[c] else torch.zeros(0, dim)
        mean = torch.from_numpy(l2_normalise(bank.mean(0).numpy())) if banks[c] else torch.zeros(dim)
        tokens = None
        pictures = tuple(id(r.image) for r in refs if r.character == c)
        if token_encoder is not None:
            images = [r.image for r in refs if r.character == c]
            if images:
                if pictures not in token_done:
                    token_done[pictures] = token_encoder.encode(images).detach().to("cpu", torch.float32)
                tokens = token_done[pictures]
                expected = (len(images), token_encoder.space.K, token_encoder.space.D)
                if tuple(tokens.shape) != expected:
                    raise RuntimeError(f"token encoder returned shape {tuple(tokens.shape)}, expected {list(expected)}")
            done += 1
            report(done)
        face_states = None
        if face_encoder is not None:
            if pictures not in face_done:
                crops = [face_embedder.face_crop(r.image) for r in refs if r.character == c]
                face_done[pictures] = face_encoder.encode(crops).detach().to("cpu", torch.float32) if crops else \
                    torch.zeros(0, face_encoder.space.K, face_encoder.space.D)
            face_states = face_done[pictures]
            if face_states.ndim != 3 or face_states.shape[0] != len(pictures) or face_states.shape[2] != face_encoder.space.D:
                raise RuntimeError(f"face encoder returned shape {tuple(face_states.shape)}, expected [{len(pictures)}, L, {face_encoder.space.D}]")
            done += 1
            report(done)
        characters.append(CharacterEmbeds(ch.name, ch.description, bank, mean, tuple(labels[c]), tokens, face_states))

    s_hash = script_hash(script)
    token_space = token_encoder.space if token_encoder is not None else None
    parts = [s_hash, text_encoder.space, face_embedder.space, token_space, keyframe_text, description_embeds,
             mention_text, mention_present]
    for ch in characters:
        parts += [ch.bank, ch.reference_names] + ([ch.reference_tokens] if ch.reference_tokens is not None else [])
        parts += [ch.face_states] if ch.face_states is not None else []
    if face_encoder is not None:
        parts.append(face_encoder.space)
    return ScriptEmbeds(
        title=script.title,
        style=script.style,
        script_hash=s_hash,
        content_hash=_content_hash(parts),
        text_space=text_encoder.space,
        identity_space=face_embedder.space,
        keyframes=tuple(keyframes),
        keyframe_text=keyframe_text,
        style_embed=style_embed,
        description_embeds=description_embeds,
        mention_text=mention_text,
        mention_present=mention_present,
        characters=tuple(characters),
        token_space=token_space,
        shot_outlines=tuple(outlines_of_script(script)),
        face_state_space=face_encoder.space if face_encoder is not None else None,
        face_embedder=face_embedder,
        warnings=warnings,
    )
