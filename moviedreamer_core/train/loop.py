"""The training loop: one code path for the CPU, one GPU, DDP and FSDP (through accelerate).

Per optimiser step every process takes its share of the global batch (data.py), runs
``gradient_accumulation_steps`` micro-steps inside ``accelerator.accumulate`` and steps AdamW; the LR follows
a linear warm-up then a cosine decay (as planner/train.py's ``train``).

**Same optimisation on any number of processes.** The loss of a step is the mean over every predicted token
of the *global* batch. Each process scales its micro-batch's mean loss by its share of the step's predicted
tokens (counted over all processes with one small all-reduce), times processes x accumulation steps, which
DDP's gradient averaging and accelerate's ``backward`` divide out again. Each story's regulariser randomness
comes from its own generator (seeded with its stream position), so with ``planner.dropout: 0`` (element-wise
dropout draws from the per-process global RNG over the padded batch) a 2-process run follows the 1-process
run with the same global batch to float rounding, and with dropout it is the same optimisation in law.

Logged per step to ``<output.dir>/log.jsonl``: loss terms (global means), lr, epoch, samples, and every
``eval.every`` steps the held-out errors (evaluation.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict
from typing import Callable, Optional

import torch

from ..files import atomic_path
from ..planner.checkpoint import save_planner_state
from ..text_files import loads_json
from ..threads import torch_threads
from ..planner.config import preset
from ..planner.model import KeyframePlanner
from ..planner.scene_bank import (KEPT_BANKS, TooManyScenes, keep_banks, movie_empty_actions, movie_scenes,
                                  training_banks)
from ..planner.train import (FIXED_STYLE_MESSAGE, cameras_message, dropped_inputs_message, learnable_inputs,
                             movie_inputs, movie_style, shared_style)
from .config import ConfigError, TrainConfig, micro_batch_size
from .data import StreamSampler, eval_windows, open_dataset, stats_from_moments, token_moments
from .evaluation import PlannerObjective, evaluate_heldout
from .state import TrainerState, checkpoints_dir, find_resume, fingerprint, load_checkpoint, save_checkpoint, write_json_atomic

LOSS_TERMS = ("loss", "nll", "l2", "cosine")


def fsdp_plugin(cfg: TrainConfig):
    """accelerate's FSDP plugin from ``train.fsdp``: one FSDP unit per LLaMA decoder layer, sharded state for
    checkpoints, rank-0-only loading of the initial weights (``cpu_ram_efficient_loading``)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    f = cfg.train.fsdp
    kwargs = dict(fsdp_version=f.version, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=[f.wrap],
                  cpu_offload=f.cpu_offload, state_dict_type=f.state_dict_type,
                  cpu_ram_efficient_loading=f.cpu_ram_efficient_loading, activation_checkpointing=False)
    if f.version == 1:
        kwargs.update(sharding_strategy=f.sharding_strategy, use_orig_params=True, sync_module_states=f.cpu_ram_efficient_loading)
    else:
        kwargs.update(reshard_after_forward=f.sharding_strategy != "SHARD_GRAD_OP")
    return FullyShardedDataParallelPlugin(**kwargs)


def build_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    t = cfg.train
    kwargs = dict(mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps, cpu=t.cpu)
    if t.fsdp.enabled:
        kwargs["fsdp_plugin"] = fsdp_plugin(cfg)
    else:
        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(find_unused_parameters=t.find_unused_parameters)]
    return Accelerator(**kwargs)


def build_planner(cfg: TrainConfig, spaces: dict, *, is_main: bool = True, carriers=None, styles=None, scenes=None,
                  empty=None, log: Callable[[str], None] = lambda s: None) -> tuple[KeyframePlanner, bool]:
    """The planner to train and whether it sits on the meta device (FSDP ranks > 0 with rank-0-only
    loading: FSDP fills them from rank 0 with ``sync_module_states``). ``carriers``: each training film's optional
    inputs (``planner.train.movie_inputs``); the planner reads only those some film gives (``learnable_inputs``).
    ``styles``: each training film's style embedding (``planner.train.movie_style``); when all are one, the planner
    keeps it (``planner.train.shared_style``, ``PlannerConfig.fixed_style``). ``scenes``: each training film's scene
    embeddings (``planner.scene_bank.movie_scenes``), read only when ``planner.snap_scenes`` asks the planner to keep
    their distinct rows (``PlannerConfig.scene_bank``); ``empty``: each training film's actions of keyframes with
    nobody on screen (``planner.scene_bank.movie_empty_actions``), read only for ``planner.snap_empty``
    (``PlannerConfig.empty_bank``)."""
    overrides = cfg.planner_overrides(spaces)
    folder = cfg.planner.init_from_llama
    if folder and not os.path.isfile(os.path.join(folder, "config.json")):
        raise ConfigError(f"planner.init_from_llama: {folder!r} is not a local transformers LLaMA folder (no config.json)")
    if carriers is not None:
        requested = (KeyframePlanner.config_from_llama(folder, **overrides) if folder
                     else preset(cfg.planner.preset, **overrides)).inputs
        kept, dropped, cameras = learnable_inputs(list(requested), carriers)
        if dropped:
            log(dropped_inputs_message(dropped, kept))
            overrides["inputs"] = kept
        if cameras:
            log(cameras_message(cameras))
        overrides["cameras"] = cameras  # the trainer's to fill, never a user's
    style = shared_style(styles) if styles is not None else None
    if style is not None:
        log(FIXED_STYLE_MESSAGE)
        overrides["fixed_style"] = True
    overrides.update({name: 0 for name in KEPT_BANKS})  # the trainer's to fill, never a user's
    try:
        banks, messages = training_banks(scenes if overrides.get("snap_scenes") else None,
                                         empty if overrides.get("snap_empty") else None)
    except TooManyScenes as e:
        raise ConfigError(str(e)) from None
    for line in messages:
        log(line)
    overrides.update({name: len(rows) for name, rows in banks.items()})
    if folder:
        if cfg.train.fsdp.enabled and cfg.train.fsdp.cpu_ram_efficient_loading and not is_main:
            with torch.device("meta"):
                return KeyframePlanner(KeyframePlanner.config_from_llama(folder, **overrides)), True
        return _with_kept(KeyframePlanner.from_pretrained_llama(folder, **overrides), style, banks), False
    return _with_kept(KeyframePlanner(preset(cfg.planner.preset, **overrides)), style, banks), False


def _with_kept(planner: KeyframePlanner, style, banks: dict) -> KeyframePlanner:
    """The planner with the training films' style and banks it keeps (when it keeps them)."""
    if style is not None:
        planner.fixed_style.copy_(style)
    return keep_banks(planner, banks)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    t = cfg.train
    warm, steps, floor = max(1, t.warmup_steps), t.steps, t.min_lr_ratio

    def f(s: int) -> float:
        cosine = 0.5 * (1 + math.cos(min(s, steps) / steps * math.pi))
        return min(1.0, (s + 1) / warm) * (floor + (1 - floor) * cosine)

    return f


def run(cfg: TrainConfig, log: Optional[Callable[[str], None]] = print) -> dict:
    """Train (or resume) as configured; returns ``{"history": [per-step records of this invocation],
    "planner": path of the final planner file, "checkpoints": [...]}``."""
    with torch_threads(cfg.train.threads or None):
        accelerator = build_accelerator(cfg)
        try:
            return _run(cfg, accelerator, log or (lambda s: None))
        finally:
            _release(accelerator)


def _release(accelerator) -> None:
    """End the process group and accelerate's per-process singletons (so a test can run twice in one process)."""
    from accelerate.state import AcceleratorState, GradientState

    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _run(cfg: TrainConfig, accelerator, log: Callable[[str], None]) -> dict:
    from accelerate.utils import set_seed

    t = cfg.train
    procs, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    micro = micro_batch_size(cfg, procs)
    if not main:
        def log(message: str) -> None:
            pass
    set_seed(t.seed, device_specific=True)  # the global RNGs (dropout): different per process, saved per process
    data = open_dataset(cfg.data, t.seed)
    resume = find_resume(cfg, log)

    carriers = (movie_inputs(os.path.join(data.train.folder, name)) for name in data.train.names)
    styles = (movie_style(os.path.join(data.train.folder, name)) for name in data.train.names)
    scenes = (movie_scenes(os.path.join(data.train.folder, name)) for name in data.train.names)
    empty = (movie_empty_actions(os.path.join(data.train.folder, name)) for name in data.train.names)
    planner, on_meta = build_planner(cfg, data.spaces, is_main=main, carriers=carriers, styles=styles, scenes=scenes,
                                     empty=empty, log=log)
    planner_cfg = planner.cfg
    if resume is None:
        moments = accelerator.reduce(token_moments(data.train, rank, procs).to(accelerator.device), "sum").cpu()
        if not on_meta:
            mean, std = stats_from_moments(moments)
            planner.token_mean.copy_(mean)
            planner.token_std.copy_(std)
    if t.gradient_checkpointing:
        planner.enable_activation_checkpointing()
    n_params = sum(p.numel() for p in planner.parameters())

    objective = PlannerObjective(planner)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    objective, optimizer = accelerator.prepare(objective, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(getattr(optimizer, "optimizer", optimizer), lr_lambda(cfg))

    expected = fingerprint(cfg, data.train.fingerprint(), procs)
    state = TrainerState(fingerprint=expected)
    if resume is not None:
        state = load_checkpoint(accelerator, resume, expected)
        scheduler.load_state_dict(state.scheduler)
        log(f"resumed {resume} at step {state.step} (epoch {state.epoch}, {state.samples_seen} samples)")

    os.makedirs(cfg.output.dir, exist_ok=True)
    log_path = os.path.join(cfg.output.dir, "log.jsonl")
    if main:
        if resume is not None:
            _truncate_log(log_path, state.step)
        else:
            config_path = os.path.join(cfg.output.dir, "config.json")
            for before, kept in keep_earlier_run(log_path, checkpoints_dir(cfg)):
                if before == log_path:
                    log(f"starting afresh: the earlier training log {before} is kept as {kept}")
                    continue
                if os.path.isfile(config_path):  # the earlier run's settings, which this run's config.json replaces
                    shutil.copy2(config_path, os.path.join(kept, "config.json"))
                log(f"starting afresh: the earlier run's checkpoints {before} are kept as {kept} (never resumed from "
                    f"there by checkpoint.resume=auto)")
        write_json_atomic(os.path.join(cfg.output.dir, "config.json"), cfg.to_dict())
    log(f"{len(data.train)} training films, {len(data.val)} held out; {n_params / 1e6:.2f} M parameters; "
        f"{procs} process(es) x {t.gradient_accumulation_steps} micro-step(s) x {micro} = global batch {t.batch_size}")

    sampler = StreamSampler(data.train, seed=t.seed, max_keyframes=cfg.data.max_keyframes)
    windows = eval_windows(data.val, cfg.data.max_keyframes)
    K = planner_cfg.K
    history, saved = [], []
    t0 = time.time()
    objective.train()
    while state.step < t.steps:
        step = state.step
        batches = [sampler.micro_batch(step, m, rank, global_batch=t.batch_size, micro_batch=micro, num_processes=procs)
                   for m in range(t.gradient_accumulation_steps)]
        rows = [sum(s.n_keyframes for s in stories) * K for stories, _ in batches]
        rows_global = float(accelerator.reduce(torch.tensor([float(sum(rows))], dtype=torch.float64,
                                                            device=accelerator.device), "sum").item())
        scale = procs * t.gradient_accumulation_steps / rows_global
        sums = torch.zeros(len(LOSS_TERMS), dtype=torch.float64)
        lr = scheduler.get_last_lr()[0]
        for (stories, gens), n in zip(batches, rows):
            with accelerator.accumulate(objective):
                out = objective(stories, gens)
                accelerator.backward(out["loss"] * (n * scale))
                sums += torch.tensor([float(out[k].detach()) * n for k in LOSS_TERMS], dtype=torch.float64)
                if accelerator.sync_gradients and t.grad_clip:
                    accelerator.clip_grad_norm_(objective.parameters(), t.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        totals = accelerator.reduce(sums.to(accelerator.device), "sum").cpu() / rows_global

        state.step += 1
        state.samples_seen = state.step * t.batch_size
        state.epoch = sampler.epoch_of(state.samples_seen - 1)
        record = {"step": state.step, **{k: float(v) for k, v in zip(LOSS_TERMS, totals)}, "lr": lr,
                  "epoch": state.epoch, "samples": state.samples_seen, "seconds": round(time.time() - t0, 3)}
        last = state.step == t.steps
        if windows and ((cfg.eval.every and state.step % cfg.eval.every == 0) or last):
            record.update(evaluate_heldout(accelerator, objective, data.val, windows, batch_size=cfg.eval.batch_size,
                                           baselines=cfg.eval.baselines))
        history.append(record)
        if main:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if (cfg.output.log_every and state.step % cfg.output.log_every == 0) or last or "val_mse" in record:
            extra = "".join(f" {k} {v:.4f}" for k, v in record.items() if k.startswith("val"))
            log(f"step {state.step}/{t.steps} loss {record['loss']:.4f} nll {record['nll']:.4f} l2 {record['l2']:.4f} "
                f"lr {lr:.2e}{extra} ({record['seconds']:.0f} s)")
        if cfg.checkpoint.every and state.step % cfg.checkpoint.every == 0 and not last:
            state.scheduler = scheduler.state_dict()
            saved.append(save_checkpoint(accelerator, cfg, state))

    path = cfg.planner_file
    full = accelerator.get_state_dict(objective)  # gathered on the main process under FSDP
    if main:
        weights = {k[len("planner."):]: v for k, v in full.items() if k.startswith("planner.")}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save_planner_state(weights, planner_cfg, path, extra={"steps": state.step, "samples": state.samples_seen,
                                                               "movies": len(data.train), "train": asdict(cfg.train)})
        log(f"saved {path}")
    accelerator.wait_for_everyone()
    return {"history": history, "planner": path, "checkpoints": saved, "parameters": n_params}


#: The largest training log a resume reads (``log.jsonl``): a record is a few hundred bytes a step (under 1 KB with the
#: held-out errors), so 1 GiB is millions of steps, far past any run of this trainer; a larger file (a sparse file, a
#: foreign one) is refused by its size rather than read for minutes.
MAX_LOG_BYTES = 2**30
#: The longest log line a resume keeps: a record is under 1 KB; a longer line (a damaged file) is dropped, read in
#: pieces of this size, so no line is ever held whole in memory.
MAX_LOG_LINE_BYTES = 2**20


def keep_earlier_run(log_path: str, checkpoints: str) -> list[tuple[str, str]]:
    """A run that starts afresh (no checkpoint to resume: ``checkpoint.resume=none``, or ``auto`` with none there) in
    a folder an earlier run used moves that run's training log ``log_path`` aside to ``log.<n>.jsonl`` and its
    ``checkpoints`` folder to ``checkpoints.<n>`` beside them, one ``<n>`` for both (the first free for both), and
    returns the ``(path, kept as)`` pairs it moved (none for an empty log or checkpoints folder, or none there).

    Before, a fresh start cut the log to step 0 (``_truncate_log``, meant for a resume), so a resume whose checkpoint
    had gone lost the run's whole history (a review); appending instead would mix two runs' step numbers in one file.
    And the new run wrote its checkpoints over the earlier run's folders of the same steps and its ``latest.json``
    (and ``checkpoint.keep`` pruned the rest among its own), so ``resume=none`` silently lost the earlier run's
    checkpoints (an audit). Moved aside, they are never resumed by ``auto``, which reads ``checkpoints/`` only. The
    caller copies the earlier run's ``config.json`` (which the new run's replaces) into the moved checkpoints folder."""
    moves = [p for p in (log_path, checkpoints) if (os.path.isfile(p) and os.path.getsize(p) > 0)
             or (os.path.isdir(p) and os.listdir(p))]
    if not moves:
        return []

    def kept_as(path: str, n: int) -> str:
        stem, ext = os.path.splitext(path) if path == log_path else (path, "")
        return f"{stem}.{n}{ext}"

    n = 1
    while any(os.path.lexists(kept_as(p, n)) for p in (log_path, checkpoints)):
        n += 1
    for path in moves:
        os.rename(path, kept_as(path, n))
    return [(path, kept_as(path, n)) for path in moves]


def _truncate_log(path: str, step: int) -> None:
    """Keep the log's records up to ``step`` (a resumed run rewrites what came after its checkpoint). A line that is not
    a record, such as the last one cut short by a kill while it was written, nested too deeply, not an object, without
    a whole-number ``step`` or longer than ``MAX_LOG_LINE_BYTES``, is dropped with the records after the checkpoint:
    before, it stopped the resume with a traceback (``JSONDecodeError``, ``KeyError``). The log is read a line at a
    time and written again atomically; one past ``MAX_LOG_BYTES`` is a ``ConfigError`` naming it."""
    if not os.path.isfile(path):
        return
    size = os.path.getsize(path)
    if size > MAX_LOG_BYTES:
        raise ConfigError(f"{path} is {size:,} bytes, more than the limit of {MAX_LOG_BYTES:,} bytes for a training log; "
                          "move it away to resume")
    with open(path, "rb") as src, atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as out:
        left = MAX_LOG_BYTES + 1  # it may grow while it is read: never past the limit
        while left > 0:
            line = src.readline(min(MAX_LOG_LINE_BYTES + 1, left))
            if not line:
                break
            left -= len(line)
            if len(line) > MAX_LOG_LINE_BYTES:  # not a record: skip the rest of it, a piece at a time
                while left > 0 and not line.endswith(b"\n"):
                    line = src.readline(min(MAX_LOG_LINE_BYTES, left))
                    left -= len(line)
                    if not line:
                        break
                continue
            try:
                record = loads_json(line)
            except ValueError:  # cut short, damaged, not UTF-8, nested too deeply
                continue
            if (isinstance(record, dict) and isinstance(record.get("step"), int)
                    and not isinstance(record["step"], bool) and record["step"] <= step):
                out.write(line.rstrip(b"\r\n") + b"\n")  # a last line that lost its newline ends one again
