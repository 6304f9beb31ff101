"""Resumable checkpoints: ``<output.dir>/checkpoints/step_XXXXXXXX/``.

Each holds accelerate's ``save_state`` (model weights as safetensors, optimiser state, and every process's
RNG states: python, numpy, torch, CUDA) plus our ``trainer_state.json``: step, samples seen and epoch (the
whole sampler state, see data.py), the LR scheduler's state (JSON, so no pickle is needed for it) and a
fingerprint of what must not change for an exact resume. A checkpoint is written to ``step_X.partial`` and
renamed into place when complete; ``latest.json`` (written atomically) names the newest complete one, so a
run killed mid-save resumes from the previous checkpoint. Loading reads the optimiser state with accelerate's
``torch.load(weights_only=True)`` default; only accelerate's own RNG file of this run is unpickled beyond that.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Optional

from .config import ConfigError, TrainConfig

STATE_FILE = "trainer_state.json"
LATEST = "latest.json"


@dataclass
class TrainerState:
    step: int = 0
    samples_seen: int = 0
    epoch: int = 0
    scheduler: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)


def write_json_atomic(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fingerprint(cfg: TrainConfig, train_films: str, num_processes: int) -> dict:
    """What an exact resume needs unchanged."""
    return {"batch_size": cfg.train.batch_size, "seed": cfg.train.seed, "train_films": train_films,
            "max_keyframes": cfg.data.max_keyframes, "num_processes": num_processes}


def checkpoints_dir(cfg: TrainConfig) -> str:
    return os.path.join(cfg.output.dir, "checkpoints")


def find_resume(cfg: TrainConfig) -> Optional[str]:
    """The checkpoint folder to resume from, or None (``checkpoint.resume``: auto | none | a folder)."""
    how = cfg.checkpoint.resume
    if how in ("none", "", None):
        return None
    if how != "auto":
        if not os.path.isfile(os.path.join(how, STATE_FILE)):
            raise ConfigError(f"checkpoint.resume: {how!r} is not a complete checkpoint (no {STATE_FILE})")
        return how
    latest = os.path.join(checkpoints_dir(cfg), LATEST)
    if not os.path.isfile(latest):
        return None
    with open(latest) as f:
        path = os.path.join(checkpoints_dir(cfg), json.load(f)["checkpoint"])
    return path if os.path.isfile(os.path.join(path, STATE_FILE)) else None


def save_checkpoint(accelerator, cfg: TrainConfig, state: TrainerState) -> str:
    """Collective: every process calls it (each writes its own RNG states, FSDP shards)."""
    root = checkpoints_dir(cfg)
    name = f"step_{state.step:08d}"
    final, partial = os.path.join(root, name), os.path.join(root, name + ".partial")
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial, safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(os.path.join(partial, STATE_FILE), asdict(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        write_json_atomic(os.path.join(root, LATEST), {"checkpoint": name, "step": state.step})
        _prune(root, cfg.checkpoint.keep, keep_name=name)
    accelerator.wait_for_everyone()
    return final


def _prune(root: str, keep: int, keep_name: str) -> None:
    if keep <= 0:
        return
    done = sorted(d for d in os.listdir(root) if d.startswith("step_") and not d.endswith(".partial"))
    for d in done[:-keep]:
        if d != keep_name:
            shutil.rmtree(os.path.join(root, d), ignore_errors=True)


def load_checkpoint(accelerator, path: str, expected: dict) -> TrainerState:
    with open(os.path.join(path, STATE_FILE)) as f:
        state = TrainerState(**json.load(f))
    changed = {k: (state.fingerprint.get(k), v) for k, v in expected.items() if state.fingerprint.get(k) != v}
    if changed:
        what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"cannot resume {path} exactly, the run changed ({what}); set checkpoint.resume=none "
                          f"to start afresh or use a new output.dir")
    accelerator.load_state(path)
    return state
