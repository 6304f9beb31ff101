"""A weights file's tensors against the model its own configuration describes, before anything is allocated.

Planner and renderer files carry their configuration in the safetensors metadata, and the loaders build the model
from it before reading the weights. A file whose configuration claims other sizes than its tensors (hand-edited,
cut short, or made to make a server allocate terabytes: a planner claiming 65536 hidden units asks for more memory
than the machine has before a single weight is read) is refused by name here: the model is built on the meta device
(no memory), its shapes compared with the ones the file's header lists.
"""

from __future__ import annotations

import os
from typing import Callable

import torch


def require_matching_shapes(build: Callable[[], torch.nn.Module], path: str) -> None:
    """Raise ``ValueError`` unless the module ``build()`` makes has exactly the tensors of the safetensors file
    ``path``, shape for shape. ``build`` runs on the meta device."""
    from safetensors import safe_open

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    with safe_open(path, framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    wrong = [f"{k} {list(found[k])} (its configuration makes {list(shape)})" for k, shape in expected.items()
             if k in found and found[k] != shape]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if wrong or missing or unexpected:
        parts = ([f"tensors of other shapes: {', '.join(wrong[:3])}"] if wrong else []) + \
                ([f"missing {missing[:5]}"] if missing else []) + ([f"unexpected {unexpected[:5]}"] if unexpected else [])
        raise ValueError(f"{os.path.basename(path)} does not match its own configuration: {'; '.join(parts)}")
