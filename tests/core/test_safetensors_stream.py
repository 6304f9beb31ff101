"""The streaming safetensors writer (``moviedreamer_core/safetensors_stream.py``) checked by the safetensors library's
own reader (its memory is measured side by side with the library's writer in ``benchmarks/fit_state_cost.py``)."""

from __future__ import annotations

import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from moviedreamer_core.safetensors_stream import header, save_streaming


def test_what_it_writes_is_read_back_by_safetensors_itself(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = [("a.weight", torch.randn(3, 5, generator=g)), ("half", torch.randn(7, generator=g).half()),
               ("brain", torch.randn(2, 3, generator=g).bfloat16()), ("step", torch.tensor(12.0)),
               ("ids", torch.arange(5)), ("state", torch.randint(0, 255, (9,), dtype=torch.uint8, generator=g)),
               ("mask", torch.tensor([True, False, True])), ("empty", torch.zeros(0, 4)),
               ("losses", torch.tensor([0.5, 0.25], dtype=torch.float64)),
               ("strided", torch.randn(4, 6, generator=g)[:, ::2])]  # not contiguous
    path = str(tmp_path / "s.safetensors")
    save_streaming(tensors, path, metadata={"k": "v", "json": '{"a": 1}'})
    loaded = load_file(path)
    assert loaded.keys() == {n for n, _ in tensors}
    for name, t in tensors:
        assert loaded[name].dtype == t.dtype and loaded[name].shape == t.shape and torch.equal(loaded[name], t), name
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == {"k": "v", "json": '{"a": 1}'}
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0 and len(raw) == 8 + n + sum(t.numel() * t.element_size() for _, t in tensors)


def test_names_dtypes_and_metadata_it_cannot_store_are_refused():
    with pytest.raises(ValueError, match="twice"):
        header([("a", torch.zeros(1)), ("a", torch.zeros(1))])
    with pytest.raises(TypeError, match="complex"):
        header([("c", torch.zeros(1, dtype=torch.complex64))])
    with pytest.raises(TypeError, match="strings"):
        header([("a", torch.zeros(1))], {"n": 1})

