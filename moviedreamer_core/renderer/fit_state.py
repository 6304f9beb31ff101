"""A renderer training that survives a crash or a Cancel: its state saved while it runs, taken up by the next run.

Training a renderer on a real model takes hours (``fit_renderer``); a ComfyUI that crashes, a power cut or a Cancel
near the end used to throw all of it away. While it trains, ``fit_renderer`` writes the whole training state to one
safetensors file beside the renderer it will save (``<save_name>.safetensors.resume``, which no loader lists): the
adapter's weights, AdamW's moments, the random generator that draws batches, noise levels and identities, the step
and the losses so far. A run of the *same* training (``training_fingerprint``: the same encoded samples, the same
starting weights, the same settings and the same frozen model) that finds the file continues from it, and ends with
exactly the renderer the uninterrupted run makes: the learning rate is constant, so only the step count may differ
(a run asked for more steps continues a shorter one's state). Any other training ignores the file and overwrites it.

The file is written every ``SAVE_EVERY_SECONDS`` (or ``SAVE_COST_FACTOR`` times the last save's time, when longer)
and when the progress callback raises (the host's Cancel), always after a whole step; the caller removes it once the
finished renderer is saved (``clear_fit_state``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Optional, Sequence

import torch

from ..fingerprint import module_digest, tensor_digest

logger = logging.getLogger(__name__)

RESUME_SUFFIX = ".resume"
METADATA_KEY = "moviedreamer_renderer_fit_state"
FORMAT = 1
#: How often a running fit writes its state at the least (a Cancel writes it at once). An SDXL renderer's state (728 M
#: weights and AdamW's two moments, float32) is 8 GB, so a fit also waits ``SAVE_COST_FACTOR`` times as long as the
#: last save took: saving costs at most 2% of the training however slow the disk.
SAVE_EVERY_SECONDS = 120.0
SAVE_COST_FACTOR = 50.0


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
    """Write the state after ``step`` whole steps (atomically: a crash while writing keeps the previous state), one
    tensor at a time from wherever it lives (``safetensors_stream``: an SDXL renderer's state is 8 GB)."""
    from ..safetensors_stream import save_streaming

    tensors = [(f"adapter.{k}", v) for k, v in adapter.state_dict().items()]
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors.append((f"optimizer.{index}.{key}", torch.as_tensor(value)))
    tensors.append(("generator", generator.get_state()))
    tensors.append(("losses", torch.tensor([float(x) for x in losses], dtype=torch.float64)))
    meta = {"format": FORMAT, "fingerprint": fingerprint, "step": int(step), "eval_before": float(eval_before)}
    save_streaming(tensors, path, metadata={METADATA_KEY: json.dumps(meta)})


def load_fit_state(path: str, *, fingerprint: str, max_step: int, adapter: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Optional[dict]:
    """Restore the state at ``path`` into ``adapter``, ``optimizer`` and ``generator`` when it is this training's
    (same ``fingerprint``) and not past ``max_step``; returns ``{"step", "losses", "eval_before"}``, or ``None``
    (nothing restored) when there is no such state. A file that cannot be read is ignored, with a warning."""
    if not os.path.isfile(path):
        return None
    from safetensors import safe_open

    name = os.path.basename(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
            if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
                logger.info("%s is another training's state: starting afresh", name)
                return None
            step = int(meta["step"])
            if step > max_step:
                logger.info("%s is at step %d, past the %d asked for: starting afresh", name, step, max_step)
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # a truncated or foreign file: the training starts afresh rather than failing
        logger.warning("%s cannot be read (%s): starting afresh", name, e)
        return None
    weights = {k.removeprefix("adapter."): v for k, v in tensors.items() if k.startswith("adapter.")}
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, field = key.split(".", 2)
            state.setdefault(int(index), {})[field] = value
    problem = _mismatch(weights, state, tensors, step, adapter, optimizer, generator)
    if problem:  # checked before anything is changed: a file that fits nowhere leaves the training as it was
        logger.warning("%s does not fit this training (%s): starting afresh", name, problem)
        return None
    device = next(adapter.parameters()).device
    adapter.load_state_dict({k: v.to(device) for k, v in weights.items()})
    state = {i: {f: v if f == "step" else v.to(device) for f, v in fields.items()} for i, fields in state.items()}
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    generator.set_state(tensors["generator"])
    return {"step": step, "losses": tensors["losses"].tolist(), "eval_before": float(meta["eval_before"])}


def _mismatch(weights: dict, state: dict, tensors: dict, step: int, adapter: torch.nn.Module,
              optimizer: torch.optim.Optimizer, generator: torch.Generator) -> str:
    """What in a saved state does not fit the training it would be restored into ("" when it all fits)."""
    own = adapter.state_dict()
    if weights.keys() != own.keys():
        return "other adapter weights"
    bad = [k for k in own if tuple(weights[k].shape) != tuple(own[k].shape)]
    if bad:
        return f"weights of other shapes ({bad[0]})"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, fields in state.items():
        if not 0 <= index < len(params):
            return f"optimizer state for parameter {index} of {len(params)}"
        if any(k != "step" and tuple(v.shape) != tuple(params[index].shape) for k, v in fields.items()):
            return f"optimizer moments of other shapes (parameter {index})"
    g = tensors.get("generator")
    if g is None or g.dtype != torch.uint8 or g.shape != generator.get_state().shape:
        return "no generator state of this kind"
    losses = tensors.get("losses")
    if losses is None or losses.ndim != 1 or losses.numel() != step:
        return f"{0 if losses is None else losses.numel()} losses for {step} steps"
    return ""


def clear_fit_state(renderer_path: str) -> None:
    """Remove the training state of the renderer at ``renderer_path`` (its training is finished and saved)."""
    try:
        os.remove(state_path(renderer_path))
    except FileNotFoundError:
        pass
