"""A training's whole state in one safetensors file, so that a crash, a kill or a Cancel costs minutes, not the run.

Two trainers of the pack run long enough to need it: the renderer training (``renderer/fit_state.py``: hours on a
real model) and the toy cinema's decoder (``toycinema/autoencoder.py``: 22 minutes on two CPU cores, its tuning
phase 6). Each writes, while it runs, everything the next step depends on: the trained modules' weights, AdamW's
moments, the random generator that draws batches and noise, named extra tensors (an exponential moving average),
the step and the losses so far. A later run of the *same* training (the caller's ``fingerprint``) that finds the
file restores all of it and ends exactly as the uninterrupted run would have; any other training ignores the file.

A file is taken up whole or not at all: its tensors are checked against the training's own (names, shapes, the
generator's kind, one loss per step) before anything is restored, so a truncated or foreign file starts the training
afresh with a warning instead of failing it or restoring half of it. Files are written one tensor at a time
(``safetensors_stream``: an SDXL renderer's state is 8 GB) and atomically (a crash while writing keeps the previous
state). Everything is safetensors: no pickle.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable, Optional, Sequence

import torch

from .text_files import loads_json_object

logger = logging.getLogger(__name__)

FORMAT = 1
#: How often a running training writes its state at the least (a Cancel or Ctrl-C writes it at once). A large state
#: takes long to write (an SDXL renderer's 8 GB: 32 s here), so a training also waits ``SAVE_COST_FACTOR`` times as
#: long as its last save took: saving costs at most 2% of the training however slow the disk.
SAVE_EVERY_SECONDS = 120.0
SAVE_COST_FACTOR = 50.0
#: Names in the file that are not a module's weights.
_RESERVED = ("optimizer", "generator", "losses", "tensor")


def save_state(path: str, *, metadata_key: str, fingerprint: str, step: int, losses: Sequence[float],
               modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, generator: torch.Generator,
               tensors: Optional[dict[str, torch.Tensor]] = None, extra: Optional[dict] = None) -> None:
    """Write the state after ``step`` whole steps. ``modules``: the trained modules by name (a name is a prefix of
    their weights' names in the file); ``tensors``: other tensors the training changes in place (restored into the
    same tensors by ``load_state``); ``extra``: JSON values kept in the metadata (``load_state`` returns them)."""
    from .safetensors_stream import save_streaming

    _check_names(modules)
    items = [(f"{name}.{k}", v) for name, m in modules.items() for k, v in m.state_dict().items()]
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            items.append((f"optimizer.{index}.{key}", torch.as_tensor(value)))
    items.append(("generator", generator.get_state()))
    items.append(("losses", torch.tensor([float(x) for x in losses], dtype=torch.float64)))
    items += [(f"tensor.{k}", v) for k, v in (tensors or {}).items()]
    meta = {**(extra or {}), "format": FORMAT, "fingerprint": fingerprint, "step": int(step)}
    save_streaming(items, path, metadata={metadata_key: json.dumps(meta)})


def load_state(path: str, *, metadata_key: str, fingerprint: str, max_step: int, modules: dict[str, torch.nn.Module],
               optimizer: torch.optim.Optimizer, generator: torch.Generator,
               tensors: Optional[dict[str, torch.Tensor]] = None) -> Optional[dict]:
    """Restore the state at ``path`` into ``modules``, ``optimizer``, ``generator`` and ``tensors`` (as ``save_state``
    was given them) when it is this training's (same ``fingerprint``) and not past ``max_step``; returns ``{"step",
    "losses", "extra"}`` (``extra``: the metadata ``save_state`` kept), or ``None`` with nothing restored."""
    if not os.path.isfile(path):
        return None
    from safetensors import safe_open

    _check_names(modules)
    name = os.path.basename(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = loads_json_object((f.metadata() or {}).get(metadata_key, "{}"), f"its '{metadata_key}' metadata")
            if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
                logger.info("%s is another training's state: starting afresh", name)
                return None
            step = int(meta["step"])
            if step > max_step:
                logger.info("%s is at step %d, past the %d asked for: starting afresh", name, step, max_step)
                return None
            # copies, not views of the file's memory map: the optimizer keeps some as they are, and Windows refuses
            # to replace a file that is still mapped (the next save of this state would fail)
            saved = {k: f.get_tensor(k).clone() for k in f.keys()}
    except Exception as e:  # a truncated or foreign file: the training starts afresh rather than failing
        logger.warning("%s cannot be read (%s): starting afresh", name, e)
        return None
    weights = {m: {k.removeprefix(f"{m}."): v for k, v in saved.items() if k.startswith(f"{m}.")} for m in modules}
    moments: dict = {}
    for key, value in saved.items():
        if key.startswith("optimizer."):
            _, index, field = key.split(".", 2)
            moments.setdefault(int(index), {})[field] = value
    others = {k.removeprefix("tensor."): v for k, v in saved.items() if k.startswith("tensor.")}
    problem = _mismatch(weights, moments, others, saved, step, modules, optimizer, generator, tensors or {})
    if problem:  # checked before anything is changed: a file that fits nowhere leaves the training as it was
        logger.warning("%s does not fit this training (%s): starting afresh", name, problem)
        return None
    device = None
    for m, module in modules.items():
        device = next(module.parameters()).device
        module.load_state_dict({k: v.to(device) for k, v in weights[m].items()})
    moments = {i: {f: v if f == "step" else v.to(device) for f, v in fields.items()} for i, fields in moments.items()}
    optimizer.load_state_dict({"state": moments, "param_groups": optimizer.state_dict()["param_groups"]})
    generator.set_state(saved["generator"])
    with torch.no_grad():
        for k, t in (tensors or {}).items():
            t.copy_(others[k].to(t.device, t.dtype))
    extra = {k: v for k, v in meta.items() if k not in ("format", "fingerprint", "step")}
    return {"step": step, "losses": saved["losses"].tolist(), "extra": extra}


def _check_names(modules: dict) -> None:
    bad = [m for m in modules if m in _RESERVED or "." in m or not m]
    if bad:
        raise ValueError(f"module names {bad} cannot be told apart from the file's other entries")


def _mismatch(weights: dict, moments: dict, others: dict, saved: dict, step: int, modules: dict,
              optimizer: torch.optim.Optimizer, generator: torch.Generator, tensors: dict) -> str:
    """What in a saved state does not fit the training it would be restored into ("" when it all fits)."""
    for m, module in modules.items():
        own = module.state_dict()
        if weights[m].keys() != own.keys():
            return f"other {m} weights"
        bad = [k for k in own if tuple(weights[m][k].shape) != tuple(own[k].shape)]
        if bad:
            return f"weights of other shapes ({m}.{bad[0]})"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, fields in moments.items():
        if not 0 <= index < len(params):
            return f"optimizer state for parameter {index} of {len(params)}"
        if any(k != "step" and tuple(v.shape) != tuple(params[index].shape) for k, v in fields.items()):
            return f"optimizer moments of other shapes (parameter {index})"
    if others.keys() != tensors.keys():
        return "other extra tensors"
    bad = [k for k in tensors if tuple(others[k].shape) != tuple(tensors[k].shape)]
    if bad:
        return f"extra tensors of other shapes ({bad[0]})"
    g = saved.get("generator")
    if g is None or g.dtype != torch.uint8 or g.shape != generator.get_state().shape:
        return "no generator state of this kind"
    losses = saved.get("losses")
    if losses is None or losses.ndim != 1 or losses.numel() != step:
        return f"{0 if losses is None else losses.numel()} losses for {step} steps"
    return ""


class SaveSchedule:
    """When a running training writes its state: ``save(step)`` after a step once ``every`` seconds have passed since
    the last save (``None``: ``SAVE_EVERY_SECONDS``, or ``SAVE_COST_FACTOR`` times the last save's time when that is
    longer), and at once through ``save_now`` (a Cancel, a Ctrl-C)."""

    def __init__(self, save: Callable[[int], None], every: Optional[float] = None):
        self._save, self._fixed = save, every
        self.every = SAVE_EVERY_SECONDS if every is None else float(every)
        self._saved_at = time.monotonic()

    def after_step(self, done: int) -> None:
        if time.monotonic() - self._saved_at >= self.every:
            self.save_now(done)

    def save_now(self, done: int) -> None:
        t0 = time.monotonic()
        self._save(done)
        if self._fixed is None:  # a slow save (a large state, a slow disk) is made less often
            self.every = max(SAVE_EVERY_SECONDS, SAVE_COST_FACTOR * (time.monotonic() - t0))
        self._saved_at = time.monotonic()


def remove_state(path: str) -> None:
    """Remove a training's state file (its training is finished and saved); nothing when there is none."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
