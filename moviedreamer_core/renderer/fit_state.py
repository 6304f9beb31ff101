"""A renderer training that survives a crash or a Cancel: its state saved while it runs, taken up by the next run.

Training a renderer on a real model takes hours (``fit_renderer``); a ComfyUI that crashes, a power cut or a Cancel
near the end used to throw all of it away. While it trains, ``fit_renderer`` writes the whole training state to one
safetensors file beside the renderer it will save (``<save_name>.safetensors.resume``, which no loader lists): the
adapter's weights, AdamW's moments, the random generator that draws batches, noise levels and identities, the step
and the losses so far. A run of the *same* training (``training_fingerprint``: the same encoded samples, the same
starting weights, the same settings and the same frozen model) that finds the file continues from it, and ends with
exactly the renderer the uninterrupted run makes: the learning rate is constant, so only the step count may differ
(a run asked for more steps continues a shorter one's state). Any other training ignores the file and overwrites it.

The file is written on ``training_state.SaveSchedule`` (every two minutes, less often when saving is slow) and when the
progress callback raises (the host's Cancel), always after a whole step; the caller removes it once the finished
renderer is saved (``clear_fit_state``). The file's form and its checks are ``training_state``'s, which the toy
cinema's decoder training shares.
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional, Sequence

import torch

from ..fingerprint import module_digest, tensor_digest
from ..training_state import FORMAT, load_state, remove_state, save_state

RESUME_SUFFIX = ".resume"
METADATA_KEY = "moviedreamer_renderer_fit_state"


def state_path(renderer_path: str) -> str:
    """Where the training of the renderer saved at ``renderer_path`` keeps its state."""
    return renderer_path + RESUME_SUFFIX


def _digest_tensor(h, t: Optional[torch.Tensor]) -> None:
    h.update(b"none;" if t is None else tensor_digest(t))


def inputs_fingerprint(tensors: dict, values: dict) -> str:
    """A digest of a training's inputs: ``tensors`` (e.g. the images) by content, ``values`` (JSON-able: captions,
    model fingerprints, settings) by value. The training node fingerprints what it was given rather than the samples
    it encodes from it, which a GPU may encode a few bits differently from one run to the next."""
    h = hashlib.sha256(b"renderer-fit-inputs;")
    h.update(json.dumps(values, sort_keys=True, default=str).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        _digest_tensor(h, tensors[name])
    return h.hexdigest()


def training_fingerprint(samples: Optional[Sequence], adapter: torch.nn.Module, settings: dict) -> str:
    """What makes two trainings the same one: every encoded sample (latents, tokens, text, identity and its bank,
    pooled text; ``None``: ``settings`` identifies them, see ``inputs_fingerprint``), the adapter's starting
    weights (sampled: ``fingerprint.module_digest``) and ``settings`` (JSON-able: the hyper-parameters other than the step count, and a fingerprint of the
    frozen model the loss goes through)."""
    h = hashlib.sha256(f"renderer-fit/{FORMAT};".encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for s in samples or ():
        for t in (s.latents, s.tokens, s.text, s.identity, s.bank, s.pooled):
            _digest_tensor(h, t)
    h.update(module_digest(adapter).encode())  # sampled, as the nodes tell models apart: an SDXL renderer is 2.8 GB
    return h.hexdigest()


def save_fit_state(path: str, *, fingerprint: str, step: int, losses: Sequence[float], eval_before: float,
                   adapter: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    """Write the state after ``step`` whole steps (``training_state.save_state``: atomically, one tensor at a time)."""
    save_state(path, metadata_key=METADATA_KEY, fingerprint=fingerprint, step=step, losses=losses,
               modules={"adapter": adapter}, optimizer=optimizer, generator=generator,
               extra={"eval_before": float(eval_before)})


def load_fit_state(path: str, *, fingerprint: str, max_step: int, adapter: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Optional[dict]:
    """Restore the state at ``path`` into ``adapter``, ``optimizer`` and ``generator`` when it is this training's
    (same ``fingerprint``) and not past ``max_step``; returns ``{"step", "losses", "eval_before"}``, or ``None``
    (nothing restored) when there is no such state, or it cannot be read or does not fit (``training_state``)."""
    restored = load_state(path, metadata_key=METADATA_KEY, fingerprint=fingerprint, max_step=max_step,
                          modules={"adapter": adapter}, optimizer=optimizer, generator=generator)
    if restored is None:
        return None
    return {"step": restored["step"], "losses": restored["losses"], "eval_before": float(restored["extra"]["eval_before"])}


def clear_fit_state(renderer_path: str) -> None:
    """Remove the training state of the renderer at ``renderer_path`` (its training is finished and saved)."""
    remove_state(state_path(renderer_path))
