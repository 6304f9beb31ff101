"""A weights file's tensors against the model its own configuration describes, before anything is allocated.

Planner and renderer files carry their configuration in the safetensors metadata, and the loaders build the model
from it before reading the weights. A file whose configuration claims other sizes than its tensors (hand-edited,
cut short, or made to make a server allocate terabytes: a planner claiming 65536 hidden units asks for more memory
than the machine has before a single weight is read) is refused by name here: the model is built on the meta device
(no memory), its shapes compared with the ones the file's header lists. The build stops once it has made far more torch
calls than a model of the file's tensors needs, so a configuration that describes a huge model costs little more than
the file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode


class _TooMuchWork(Exception):
    pass


#: Torch calls a model's construction may make per tensor of the file (and a fixed allowance) before the build is
#: stopped. Measured: 3-4 per tensor for the toy and paper-sized planners and an SDXL-sized renderer, 21 for the toy
#: renderer (its place terms); a file whose configuration describes far more than it holds stops early.
CALLS_PER_TENSOR, CALLS_ALLOWED = 64, 4096


class _CallBudget(TorchFunctionMode):
    """Counts the torch calls made while it is active and stops at ``limit``. A torch function mode belongs to the
    thread that enters it: other threads building models meanwhile are neither counted nor touched (a global
    parameter-registration hook was: adding and removing it while another thread iterated torch's hooks broke that
    thread's build)."""

    def __init__(self, limit: int):
        super().__init__()
        self.left = limit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.left -= 1
        if self.left < 0:
            raise _TooMuchWork
        return func(*args, **(kwargs or {}))


@contextmanager
def _bounded_build(tensors: int, path: str) -> Iterator[None]:
    """Stop the build once it has made far more torch calls than a model of the file's ``tensors`` needs: it cannot
    match then, and a configuration of 20000 layers in a 1 KB file took 40 s and 1.7 GB to build even on the meta
    device."""
    try:
        with _CallBudget(CALLS_ALLOWED + CALLS_PER_TENSOR * tensors):
            yield
    except _TooMuchWork:
        raise ValueError(f"{os.path.basename(path)} does not match its own configuration: the configuration describes "
                         f"a far larger model than the {tensors:,} tensors the file holds") from None


def require_matching_shapes(build: Callable[[], torch.nn.Module], path: str) -> None:
    """Raise ``ValueError`` unless the module ``build()`` makes has exactly the tensors of the safetensors file
    ``path``, shape for shape. ``build`` runs on the meta device."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    try:
        with torch.device("meta"), _bounded_build(len(found), path):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (TypeError, RuntimeError) as e:  # options a module does not take, sizes it cannot have
        raise ValueError(f"{os.path.basename(path)}: its configuration describes no model this pack can build "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    wrong = [f"{k} {list(found[k])} (its configuration makes {list(shape)})" for k, shape in expected.items()
             if k in found and found[k] != shape]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if wrong or missing or unexpected:
        parts = ([f"tensors of other shapes: {', '.join(wrong[:3])}"] if wrong else []) + \
                ([f"missing {missing[:5]}"] if missing else []) + ([f"unexpected {unexpected[:5]}"] if unexpected else [])
        raise ValueError(f"{os.path.basename(path)} does not match its own configuration: {'; '.join(parts)}")
