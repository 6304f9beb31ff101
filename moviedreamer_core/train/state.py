"""Resumable checkpoints: ``<output.dir>/checkpoints/step_XXXXXXXX/``.

Each holds accelerate's ``save_state`` (model weights as safetensors, optimiser state, and every process's
RNG states: python, numpy, torch, CUDA) plus our ``trainer_state.json``: step, samples seen and epoch (the
whole sampler state, see data.py), the LR scheduler's state (JSON, so no pickle is needed for it) and a
fingerprint of what must not change for an exact resume. A checkpoint is written to ``step_X.partial`` and
renamed into place when complete; ``latest.json`` (written atomically) names the newest complete one, so a
run killed mid-save resumes from the previous checkpoint. Loading reads the optimiser state with accelerate's
``torch.load(weights_only=True)``. Random states are *not* left to accelerate, which pickles them: each process
writes its own as ``rng_<i>.safetensors`` (torch, CUDA and numpy state arrays) plus ``rng_<i>.json`` (python's
state, numpy's scalars, accelerate's step), and accelerate's pickle is deleted, so nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Optional

from ..files import atomic_write_text, save_safetensors
from ..text_files import read_json_object
from .config import ConfigError, TrainConfig

#: accelerate's own (pickled) random-state file, replaced by ``rng_<i>.safetensors`` + ``rng_<i>.json``.
ACCELERATE_RNG = "random_states_{}.pkl"

STATE_FILE = "trainer_state.json"
LATEST = "latest.json"
#: The largest checkpoint JSON file a resume reads (``latest.json``, ``trainer_state.json``, ``rng_<i>.json``). Those
#: this trainer writes are a few kilobytes (a name and a step; the LR scheduler's state and the run's fingerprint with
#: its planner section; python's 625-number random state), so 16 MiB is thousands of times what a real one needs, and a
#: damaged or foreign file (a sparse file, a huge copy) is refused by its size instead of being read into memory.
MAX_CHECKPOINT_JSON_BYTES = 16 * 2**20
#: What a resume that cannot read a checkpoint's files says to do.
DAMAGED_ADVICE = ("set checkpoint.resume to another of the run's checkpoint folders (checkpoints/step_*), or "
                  "checkpoint.resume=none to start afresh")


def read_checkpoint_json(path: str) -> dict:
    """The JSON object in the checkpoint file ``path``, read bounded (``MAX_CHECKPOINT_JSON_BYTES``); a ``ConfigError``
    (the command's one-line error) naming the file when it cannot be read, is too large, is not JSON (a damaged disk, an
    edit) or is not an object. Before, ``json.load`` read it whole and its errors were tracebacks naming no file."""
    try:
        return read_json_object(path, MAX_CHECKPOINT_JSON_BYTES)
    except ValueError as e:
        raise ConfigError(f"{e}; {DAMAGED_ADVICE}") from None


@dataclass
class TrainerState:
    step: int = 0
    samples_seen: int = 0
    epoch: int = 0
    scheduler: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)


def write_json_atomic(path: str, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


#: The optimisation a checkpoint's optimiser and scheduler states belong to. A resume restores those states, so a
#: changed learning rate was ignored while config.json and the planner file recorded the new one, and another planner
#: section (preset, inputs) failed with a torch size mismatch (an audit): a resume with any of these changed is refused,
#: naming it. ``train.steps`` may change.
RESUME_TRAIN_KEYS = ("gradient_accumulation_steps", "lr", "weight_decay", "betas", "warmup_steps", "min_lr_ratio",
                     "grad_clip", "mixed_precision")


def fingerprint(cfg: TrainConfig, train_films: str, num_processes: int) -> dict:
    """What an exact resume needs unchanged (a checkpoint of an earlier release lacks the last two keys: not compared)."""
    d = cfg.to_dict()
    return {"batch_size": cfg.train.batch_size, "seed": cfg.train.seed, "train_films": train_films,
            "max_keyframes": cfg.data.max_keyframes, "num_processes": num_processes,
            "train": {k: d["train"][k] for k in RESUME_TRAIN_KEYS}, "planner": d["planner"]}


def _changes(saved: dict, expected: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs (inside the ``train`` and ``planner`` groups, by setting)."""
    out = []
    for k, v in expected.items():
        if k not in saved:
            continue
        if isinstance(v, dict) and isinstance(saved[k], dict):
            out += [f"{k}.{sub}: {saved[k].get(sub)!r} -> {v.get(sub)!r}" for sub in sorted(set(v) | set(saved[k]))
                    if saved[k].get(sub) != v.get(sub)]
        elif saved[k] != v:
            out.append(f"{k}: {saved[k]!r} -> {v!r}")
    return out


def checkpoints_dir(cfg: TrainConfig) -> str:
    return os.path.join(cfg.output.dir, "checkpoints")


#: A checkpoint folder's name as ``save_checkpoint`` writes it (``.partial`` ones are unfinished).
CHECKPOINT_NAME = re.compile(r"step_\d{8}")


def latest_checkpoint_name(latest: str) -> str:
    """The folder ``checkpoints/latest.json`` (the file ``latest``) names: one plain name inside ``checkpoints/``, as
    ``save_checkpoint`` writes it. An absolute path, ``..`` or a path separator would point the resume (and its
    ``accelerator.load_state``, which loads that folder's optimiser state) outside the run's checkpoints: refused as a
    damaged file, naming it, like the other checkpoint files a resume reads (``read_checkpoint_json``)."""
    name = read_checkpoint_json(latest).get("checkpoint")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{latest}: 'checkpoint' must name a checkpoint folder, got {str(name)[:80]}; {DAMAGED_ADVICE}")
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if os.path.isabs(name) or name == "." or ".." in name or any(c in name for c in separators):
        raise ConfigError(f"{latest}: 'checkpoint' must be the name of a folder inside {os.path.dirname(latest)} "
                          f"(such as step_00000003), got {name[:80]!r}; {DAMAGED_ADVICE}")
    return name


def complete_checkpoints(root: str) -> list[str]:
    """The checkpoint folders under ``root`` that hold a complete state (their ``trainer_state.json``, which
    ``save_checkpoint`` writes last, before the folder is renamed into place), newest first."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    done = [n for n in names if CHECKPOINT_NAME.fullmatch(n) and os.path.isfile(os.path.join(root, n, STATE_FILE))]
    return [os.path.join(root, n) for n in sorted(done, reverse=True)]


def find_resume(cfg: TrainConfig, log: Callable[[str], None] = lambda s: None) -> Optional[str]:
    """The checkpoint folder to resume from, or None (``checkpoint.resume``: auto | none | a folder).

    ``auto`` follows ``checkpoints/latest.json``. When it names a folder that is gone or incomplete (deleted by hand,
    a disk cleaned up, a copy of the run without it), or is missing while checkpoint folders are there, the newest
    complete ``checkpoints/step_*`` folder is taken instead and ``log`` says so: before, the run started afresh
    silently, ignoring the older checkpoints, and its log was cut to step 0 (a review). With none there, ``log`` warns,
    naming ``latest.json``, and the run starts afresh. A fresh start (this, or ``checkpoint.resume=none``) moves the
    earlier run's log and ``checkpoints/`` aside (``loop.keep_earlier_run``), so ``auto`` only ever resumes from
    ``checkpoints/``: the newest run's."""
    how = cfg.checkpoint.resume
    if how in ("none", "", None):
        return None
    if how != "auto":
        if not os.path.isfile(os.path.join(how, STATE_FILE)):
            raise ConfigError(f"checkpoint.resume: {how!r} is not a complete checkpoint (no {STATE_FILE})")
        return how
    root = checkpoints_dir(cfg)
    latest = os.path.join(root, LATEST)
    if os.path.isfile(latest):
        path = os.path.join(root, latest_checkpoint_name(latest))
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            return path
        why = f"{latest} names {path}, which is not a complete checkpoint (no {STATE_FILE})"
    elif not os.path.isdir(root):
        return None
    else:
        why = f"{latest} is missing"
    found = complete_checkpoints(root)
    if found:
        log(f"warning: {why}; resuming from the newest complete checkpoint folder there, {found[0]}")
        return found[0]
    if os.path.isfile(latest):
        log(f"warning: {why}, and {root} holds no other complete checkpoint (step_*/{STATE_FILE}): starting afresh")
    return None


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
    index = accelerator.process_index
    pickled = os.path.join(partial, ACCELERATE_RNG.format(index))
    if os.path.exists(pickled):
        os.remove(pickled)
    save_rng(partial, index, int(getattr(accelerator, "step", 0)))
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


def read_trainer_state(path: str) -> TrainerState:
    """The ``trainer_state.json`` of the checkpoint folder ``path``: every field ``save_checkpoint`` writes, of its
    type, or a ``ConfigError`` naming the file (a list or an unknown field was a ``TypeError``, a step in words a
    failure somewhere later)."""
    file = os.path.join(path, STATE_FILE)
    d = read_checkpoint_json(file)
    kinds = {f.name: dict if f.name in ("scheduler", "fingerprint") else int for f in fields(TrainerState)}
    wrong = sorted(set(kinds) ^ set(d))
    wrong += [k for k, kind in kinds.items() if k in d and not (isinstance(d[k], kind) and not isinstance(d[k], bool)
                                                               and (kind is dict or d[k] >= 0))]
    if wrong:
        raise ConfigError(f"{file}: not a trainer state this trainer writes (fields missing, unknown or of another type: "
                          f"{', '.join(w[:40] for w in wrong[:8])}); {DAMAGED_ADVICE}")
    return TrainerState(**d)


def load_checkpoint(accelerator, path: str, expected: dict) -> TrainerState:
    state = read_trainer_state(path)
    changed = _changes(state.fingerprint, json.loads(json.dumps(expected)))  # as saved: tuples are lists
    if changed:
        what = ", ".join(changed)
        raise ConfigError(f"cannot resume {path} exactly, the run changed ({what}); set checkpoint.resume=none "
                          f"to start afresh or use a new output.dir")
    pickled = os.path.join(path, ACCELERATE_RNG.format(accelerator.process_index))
    if os.path.exists(pickled):
        raise ConfigError(f"{pickled}: a pickled random state; this trainer never loads pickles (checkpoints it writes "
                          "hold rng_<i>.safetensors instead)")
    try:
        accelerator.load_state(path)
    except RuntimeError as e:  # a model whose tensors the checkpoint lacks: written by an earlier release
        if "Missing key" not in str(e):
            raise
        missing = ", ".join(sorted(set(re.findall(r'"([^"]+)"', str(e).split("Missing key", 1)[1].split("\n")[0]))))
        why = "".join(f" ({name}: the planner now keeps {what})" for name, what in (
            ("fixed_style", "the one style of its training films"),
            ("scene_bank", "the scene sentences of its training films"),
            ("empty_bank", "the actions of its training films' shots with nobody on screen")) if name in missing)
        raise ConfigError(f"cannot resume {path}: it lacks the model's {missing or 'tensors'}, written by an earlier "
                          f"release{why}; set checkpoint.resume=none to start afresh or use a new output.dir") from None
    step = load_rng(path, accelerator.process_index)
    if step is not None and hasattr(accelerator, "step"):
        accelerator.step = step
    return state


def save_rng(folder: str, index: int, accelerate_step: int) -> None:
    """This process's random states, without pickle."""
    import random

    import numpy as np
    import torch
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    save_safetensors({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, f"rng_{index}.safetensors"))
    write_json_atomic(os.path.join(folder, f"rng_{index}.json"), {
        "python": [version, list(internal), gauss], "numpy": [name, int(pos), int(has_gauss), float(cached)],
        "accelerate_step": accelerate_step})


def _not_a_file(path: str, other: str) -> Optional[str]:
    """What is wrong with ``path``, one of a checkpoint's pair of random-state files (``other`` the second), when it is
    not a regular file: missing beside ``other``, a folder, a named pipe, a device (None when it is one)."""
    if os.path.isfile(path):
        return None
    if not os.path.exists(path):
        return f"is missing (or a broken link) while {os.path.basename(other)} is there"
    mode = os.stat(path).st_mode
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "not a regular file")
    return f"is {kind}"


def load_rng(folder: str, index: int) -> Optional[int]:
    """Restore what ``save_rng`` wrote; returns accelerate's step. ``None`` when the checkpoint has neither file (an
    earlier release's); a ``ConfigError`` naming the file when one is missing, a folder, a named pipe or a device (before,
    any of these was taken for a checkpoint without the files, and the resume went on with the RNGs unrestored: no
    longer exact, silently; an audit), or when they do not read as ``save_rng`` writes them."""
    import random

    import numpy as np
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors_path, meta_path = os.path.join(folder, f"rng_{index}.safetensors"), os.path.join(folder, f"rng_{index}.json")
    if not (os.path.lexists(tensors_path) or os.path.lexists(meta_path)):
        return None  # a checkpoint of a release that left them to accelerate (its pickle is refused before this)
    for path, other in ((tensors_path, meta_path), (meta_path, tensors_path)):
        problem = _not_a_file(path, other)
        if problem:
            raise ConfigError(f"{path} {problem}, not the random states this trainer writes; {DAMAGED_ADVICE}")
    meta = read_checkpoint_json(meta_path)
    try:  # a damaged or edited pair: a KeyError, an unpacking or a size error naming neither file (a traceback) before
        tensors = load_file(tensors_path)
        name, pos, has_gauss, cached = meta["numpy"]
        version, internal, gauss = meta["python"]
        step = meta.get("accelerate_step", 0)
        if not isinstance(internal, list) or not isinstance(step, int):
            raise TypeError("python's state must be a list of numbers and accelerate's step a whole number")
        torch.set_rng_state(tensors["torch"])
        cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate((version, tuple(internal), gauss))
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{tensors_path} and {meta_path}: not the random states this trainer writes "
                          f"({type(e).__name__}: {str(e)[:200]}); {DAMAGED_ADVICE}") from None
    return step
