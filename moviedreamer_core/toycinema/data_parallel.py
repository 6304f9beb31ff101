"""Data parallelism for the toy decoder's training: on two cores, two one-thread processes beat one two-thread one.

The toy UNet's layers are small (32 to 64 channels on 32x32 pixels), so one process's intra-op threads spend
much of a step waiting on each other. Two processes with one thread each, each taking half of every batch, do
the same steps faster (``python nodes/toycinema_train.py --processes``; the figures are in the README).

The run stays the single-process run, up to the order of floating-point sums: every process draws the whole
batch's random numbers (rows, flips, condition dropout, identity noise, noise levels and noise) from the same
generator and keeps its contiguous share of the rows; the loss of a share is weighted by its size, so the
gradients summed across processes are the whole batch's. Parameters and the reference identities start as the
first process's (one broadcast), and one all-reduce of a flat buffer per step sums the gradients and the loss.
The processes talk through ``torch.distributed``'s gloo backend on 127.0.0.1.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` training processes (``rank`` 0 logs and saves)."""

    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")

    def part(self, n: int) -> slice:
        """The contiguous share of a batch of ``n`` rows this process computes."""
        if n < self.world:
            raise ValueError(f"a batch of {n} rows cannot be split over {self.world} processes")
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)


def start(shard: Shard, address: str, timeout_s: float = 120.0) -> None:
    """Join the process group (``address``: ``tcp://127.0.0.1:PORT``, the same for every process)."""
    dist.init_process_group("gloo", init_method=address, rank=shard.rank, world_size=shard.world,
                            timeout=datetime.timedelta(seconds=timeout_s))


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _flat_all_reduce(tensors: Sequence[torch.Tensor], op) -> None:
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    op(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.detach().copy_(flat[offset:offset + n].view_as(t))
        offset += n


def broadcast_from_first(tensors: Sequence[torch.Tensor]) -> None:
    """Every process's ``tensors`` become the first process's (in place)."""
    if tensors:
        _flat_all_reduce(tensors, lambda flat: dist.broadcast(flat, src=0))


def sum_gradients(params: Sequence[torch.nn.Parameter], loss: torch.Tensor) -> float:
    """Sum the gradients of ``params`` (those that have one: every process took the same branches) and the
    weighted ``loss`` over all processes; returns the summed loss, the whole batch's."""
    grads = [p.grad for p in params if p.grad is not None]
    total = loss.detach().reshape(1).float().clone()
    _flat_all_reduce([*grads, total], lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
    return float(total)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the processes to meet on."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

