"""The renderer training's encoded samples, kept beside its state so that a continued training does not encode again.

Before its first step the training node encodes every keyframe and its augmented copies (the VAE's latents, CLIP
Vision's tokens, the caption's text encoding, the face identity; ``renderer_train_node.encode_training_samples``).
On a real model that is minutes of work (hundreds of VAE encodes at 1024 pixels and a face detector on the CPU), and a
training continued after a crash or a Cancel (``fit_state``) used to do it all again. It also did it *differently*
where a GPU encodes a few bits differently from one run to the next, so the continued training fitted samples that
were not quite those its first part had fitted. ``save_samples`` writes the encoded samples once, beside the
training's state (``<save_name>.safetensors.samples``, which no loader lists), with the random generator's state
after the encoding (the augmentations draw from it, and what draws from it next must not change);
``load_samples`` gives them back to a run of the same training (``fingerprint``: the same images, captions, models
and settings) and nothing to any other. The caller removes the file with the state once the renderer is saved.

The samples are stored before the identity banks are attached (``identity_banks``: cheap, and they change the
identities of photos without a face), each caption's encoding once however many samples share it.
"""

from __future__ import annotations

import json
import logging
from typing import Optional, Sequence

import torch

from ..text_files import loads_json_object
from ..training_state import remove_state
from .fit import RendererSample

SAMPLES_SUFFIX = ".samples"
METADATA_KEY = "moviedreamer_renderer_samples"
FORMAT = 1


def samples_path(renderer_path: str) -> str:
    """Where the training of the renderer saved at ``renderer_path`` keeps its encoded samples."""
    return renderer_path + SAMPLES_SUFFIX


def save_samples(path: str, samples: Sequence[RendererSample], *, fingerprint: str, generator: torch.Generator,
                 extra: Optional[dict] = None) -> None:
    """Write ``samples`` (without banks) atomically, one tensor at a time (``safetensors_stream``), with the state
    of ``generator`` and ``extra`` (JSON values ``load_samples`` returns)."""
    from ..safetensors_stream import save_streaming

    items, texts, text_of = [], {}, []
    for i, s in enumerate(samples):
        items += [(f"{i}.latents", s.latents.contiguous()), (f"{i}.tokens", s.tokens.contiguous())]
        if s.identity is not None:
            items.append((f"{i}.identity", s.identity.contiguous()))
        key = id(s.text)  # a caption's encoding is one tensor shared by its samples (the node's text cache)
        if key not in texts:
            texts[key] = len(texts)
            items.append((f"text.{texts[key]}", s.text.contiguous()))
            if s.pooled is not None:
                items.append((f"pooled.{texts[key]}", s.pooled.contiguous()))
        text_of.append(texts[key])
    items.append(("generator", generator.get_state()))
    meta = {**(extra or {}), "format": FORMAT, "fingerprint": fingerprint, "count": len(samples), "text_of": text_of}
    save_streaming(items, path, metadata={METADATA_KEY: json.dumps(meta)})


def load_samples(path: str, *, fingerprint: str) -> Optional[tuple[list[RendererSample], torch.Tensor, dict]]:
    """``(samples, generator state, extra)`` saved at ``path`` by the same training (``fingerprint``), or ``None``
    when there is no such file, it is another training's, or it cannot be read whole (the caller encodes afresh)."""
    from safetensors import safe_open

    def read(name: str) -> torch.Tensor:  # a copy, not a view of the file's memory map (Windows refuses to remove
        return f.get_tensor(name).clone()  # a mapped file, and the samples live until the training ends)

    try:
        with safe_open(path, framework="pt") as f:
            meta = loads_json_object((f.metadata() or {})[METADATA_KEY], f"its '{METADATA_KEY}' metadata")
            if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
                return None
            names = set(f.keys())
            count, text_of = int(meta["count"]), [int(k) for k in meta["text_of"]]
            if count < 1 or len(text_of) != count:
                raise ValueError(f"{count} samples, {len(text_of)} caption indices")
            texts = {k: (read(f"text.{k}"), read(f"pooled.{k}") if f"pooled.{k}" in names else None)
                     for k in sorted(set(text_of))}
            samples = []
            for i, k in enumerate(text_of):
                identity = read(f"{i}.identity") if f"{i}.identity" in names else None
                samples.append(RendererSample(read(f"{i}.latents"), read(f"{i}.tokens"), texts[k][0], identity,
                                              pooled=texts[k][1]))
            generator = read("generator")
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: encode again rather than fail the training
        logging.warning("MovieDreamer: the encoded samples in %s cannot be used (%s: %s); encoding them again",
                        path, type(e).__name__, e)
        return None
    extra = {k: v for k, v in meta.items() if k not in ("format", "fingerprint", "count", "text_of")}
    return samples, generator, extra


def clear_samples(renderer_path: str) -> None:
    """Remove the encoded samples of the renderer at ``renderer_path`` (its training is finished and saved)."""
    remove_state(samples_path(renderer_path))
