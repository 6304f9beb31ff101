"""Writing a safetensors file one tensor at a time.

``safetensors.torch.save_file`` turns every tensor into a ``bytes`` copy before it writes any, so saving a state of
several gigabytes (an SDXL renderer's weights with AdamW's two moments: 8 GB, ``renderer/fit_state.py``) needs that
much free memory again on top of the tensors themselves, and those must already be in CPU memory. The format is
simple enough to stream (https://github.com/huggingface/safetensors, "Format"): 8 bytes of header length
(little-endian), a JSON header naming each tensor's dtype, shape and byte range and ``__metadata__``, padded with
spaces to a multiple of 8, then the tensors' bytes back to back. This writer computes the header from the tensors'
dtypes and shapes, then copies each tensor to the CPU and writes it, one at a time, so the extra memory is the largest
single tensor. What it writes is read by the safetensors library itself (tested against ``safe_open``).
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO, Iterable, Optional

import torch

#: torch dtype -> the format's dtype name.
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def header(tensors: Iterable[tuple[str, torch.Tensor]], metadata: Optional[dict] = None) -> bytes:
    """The length prefix and JSON header of ``tensors`` (``(name, tensor)`` in the order their bytes follow)."""
    entries, offset = {}, 0
    for name, t in tensors:
        if t.dtype not in DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} cannot be stored in safetensors")
        if name in entries or name == "__metadata__":
            raise ValueError(f"tensor name {name!r} twice or reserved")
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata maps strings to strings")
        entries = {"__metadata__": dict(metadata), **entries}
    text = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write(f: BinaryIO, tensors: list[tuple[str, torch.Tensor]], metadata: Optional[dict] = None) -> None:
    """Write ``tensors`` (on any device) with ``metadata`` to the open binary file ``f``."""
    f.write(header(tensors, metadata))
    for _, t in tensors:
        if t.numel():
            data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            f.write(memoryview(data.numpy()))
        # the CPU copy (one tensor) goes here, before the next is made


def save_streaming(tensors: list[tuple[str, torch.Tensor]], path: str, metadata: Optional[dict] = None) -> None:
    """``write`` to ``path`` atomically (``files.atomic_path``: a crash mid-write leaves the previous file)."""
    from .files import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f, tensors, metadata)
