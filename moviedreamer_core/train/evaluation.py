"""Held-out evaluation during training, sharded over processes.

The measure is planner/train.py's ``evaluate``: the teacher-forced mean squared error of the expected tokens
(in token units) on held-out films, here batched and split over processes; ``baselines`` adds the same error
with the visual history hidden and with the script replaced by the nulls (the learning tests' baselines), and
the mixture NLL is reported too. Films longer than ``data.max_keyframes`` are cut into consecutive windows.

Every process runs the same number of forward passes (short shards are padded with a zero-weight window),
which sharded models (FSDP) require. No global RNG is touched, so evaluating never changes the training run.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..planner.model import KeyframePlanner
from .data import MovieSet

MODES = {"val": (True, True), "val_no_history": (False, True), "val_no_script": (True, False)}


class PlannerObjective(nn.Module):
    """What the accelerator wraps (DDP/FSDP need every computation inside one ``forward``):
    ``mode="train"``: the planner's training loss (``KeyframePlanner.loss``, one generator per story);
    ``mode="eval"``: per-story sums of squared token error and NLL, regularisers off."""

    def __init__(self, planner: KeyframePlanner):
        super().__init__()
        self.planner = planner

    def forward(self, stories, generators=None, mode: str = "train", history: bool = True, script: bool = True):
        if mode == "train":
            return self.planner.loss(stories, generator=generators)
        return self._heldout(stories, history, script)

    def _heldout(self, stories, history: bool, script: bool) -> torch.Tensor:
        p = self.planner
        ctxs = []
        for story in stories:
            ctx = p.make_conditioning(story, train=False, cond=script)
            ctx.generator = torch.Generator().manual_seed(0)
            if not history:
                ctx.mask_history = 1.0
            ctxs.append(ctx)
        hidden, targets = p.teacher_forced(stories, ctxs)
        mix = p.predict(torch.cat(hidden))
        target = torch.cat(targets)
        sq = ((p.denormalise(mix.mean().float()) - p.denormalise(target)) ** 2).sum(-1)
        nll = mix.nll(target).float()
        sizes = [len(t) for t in targets]
        return torch.stack([torch.stack([a.sum(), b.sum()]) for a, b in zip(sq.split(sizes), nll.split(sizes))])  # [B, 2]


@torch.no_grad()
def evaluate_heldout(accelerator, model, films: MovieSet, windows: list, *, batch_size: int, baselines: bool) -> dict:
    if not windows:
        return {}
    rank, procs = accelerator.process_index, accelerator.num_processes
    per = math.ceil(len(windows) / procs)
    mine = [(w, 1.0) for w in windows[rank::procs]]
    mine += [(windows[0], 0.0)] * (per - len(mine))
    modes = [m for m in MODES if baselines or m == "val"]
    sums = torch.zeros(2 * len(modes) + 2, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for a in range(0, per, batch_size):
        chunk = mine[a:a + batch_size]
        stories = [films[i].window(s, e) for (i, s, e), _ in chunk]
        weight = torch.tensor([wt for _, wt in chunk], dtype=torch.float64)
        for j, mode in enumerate(modes):
            history, script = MODES[mode]
            out = model(stories, mode="eval", history=history, script=script).detach().double().cpu()  # [B, 2]
            sums[2 * j:2 * j + 2] += (out * weight[:, None]).sum(0)
        rows = torch.tensor([len(s.tokens) * s.tokens.shape[1] for s in stories], dtype=torch.float64)
        sums[-2] += (rows * weight).sum()
        sums[-1] += (rows * stories[0].tokens.shape[2] * weight).sum()
    model.train(was_training)
    total = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
    out = {}
    for j, mode in enumerate(modes):
        out[f"{mode}_mse"] = float(total[2 * j] / total[-1])
        out[f"{mode}_nll"] = float(total[2 * j + 1] / total[-2])
    return out
