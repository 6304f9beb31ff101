"""Fingerprints for signatures (moviedreamer_core/fingerprint.py): stable for equal values, different for values that
change an output, and a module's weight digest cached per module yet refreshed when its weights change."""

from __future__ import annotations

import functools

import numpy as np
import torch

from moviedreamer_core.fingerprint import Fingerprinter, module_digest, tensor_sample_digest


def test_weight_samples_tell_different_weights_apart_at_a_fixed_cost():
    g = torch.Generator().manual_seed(0)
    big = torch.randn(4096, 1024, generator=g)
    assert tensor_sample_digest(big) == tensor_sample_digest(big.clone())
    assert tensor_sample_digest(big) != tensor_sample_digest(big + 1e-3 * torch.randn(big.shape, generator=g))
    assert tensor_sample_digest(big) != tensor_sample_digest(big.half()), "the dtype counts"
    assert len(tensor_sample_digest(big)) < 1024 * 4 + 64, "a fixed number of elements, whatever the size"
    small = torch.arange(10.0)
    changed = small.clone()
    changed[5] = -1
    assert tensor_sample_digest(small) != tensor_sample_digest(changed), "small tensors whole"


def test_a_modules_digest_is_cached_and_follows_training():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64))
    first = module_digest(net)
    saved = net[0].weight.detach().clone()
    assert module_digest(net) == first
    torch.manual_seed(0)
    assert module_digest(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64))) == first
    with torch.no_grad():
        net[0].weight.add_(0.5)  # trained in place: same storage, new version
    assert module_digest(net) != first
    original = {"0.weight": saved}
    assert module_digest(net, substitutes=original) == first, "a patched weight's original stands in for it"


def test_values_digest_by_content():
    fp = Fingerprinter()
    assert fp.digest({"a": [1, 2.0, "x", None], "t": torch.ones(3)}) == fp.digest({"t": torch.ones(3), "a": [1, 2.0, "x", None]})
    assert fp.digest(torch.ones(3)) != fp.digest(torch.ones(3) * 2)
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1
    assert fp.digest(a) != fp.digest(b), "arrays whole, not by their (abridged) repr"

    def scale(k):
        return lambda x: x * k

    assert fp.digest(scale(2)) == fp.digest(scale(2)) != fp.digest(scale(3)), "closures by what they hold"
    assert fp.digest(functools.partial(max, 1)) != fp.digest(functools.partial(max, 2))
    assert fp.digest(torch.nn.Linear(2, 2)) != fp.digest(torch.nn.Linear(2, 2)), "modules by their weights"
    assert fp.digest(1) != fp.digest(1.0) != fp.digest("1")
