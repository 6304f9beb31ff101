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


def _pack_as_the_host_imports_it(install_path: str):
    """The pack's ``moviedreamer_core`` imported under the module name the host gives a custom-node folder at
    ``install_path`` (its ``nodes.py``: ``sys_module_name = module_path.replace(".", "_x_")``), as a second, separate
    copy of its modules. The pack's own ``__init__.py`` (which imports the host) is not run: its package is a plain
    package of the pack's folder, as far as ``moviedreamer_core`` needs."""
    import importlib
    import sys
    import types
    from pathlib import Path

    name = install_path.replace(".", "_x_")
    package = types.ModuleType(name)
    package.__path__ = [str(Path(__file__).resolve().parents[2])]
    sys.modules[name] = package
    try:
        return (importlib.import_module(f"{name}.moviedreamer_core.fingerprint"),
                importlib.import_module(f"{name}.moviedreamer_core.renderer"))
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_a_packs_own_classes_fingerprint_alike_wherever_the_pack_is_installed():
    """A distributed run's workers may have the pack at other paths than the master: the host then imports its
    classes under other module names, and a keyframe signature that held them would differ between instances (a
    one-instance run after a distributed one would render the workers' keyframes again). The pack's own classes
    fingerprint by their names inside the pack; the host's classes (here torch's) as before."""
    from moviedreamer_core import fingerprint as plain

    digests, own = [], []
    for path in ("/home/a/ComfyUI/custom_nodes/ComfyUI-MovieDreamer", "/srv/comfy.2/custom_nodes/moviedreamer-1.2"):
        fp, renderer = _pack_as_the_host_imports_it(path)
        torch.manual_seed(0)
        adapter = renderer.RendererAdapter(renderer.RendererConfig(
            token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 16}, context_dim=32, layer_dims=[24, 48, 24],
            context_tokens=4, identity_space=None, identity_tokens=2))
        assert type(adapter).__module__.startswith(path.replace(".", "_x_")), "imported as the host imports it"
        digests.append((fp.Fingerprinter().digest(adapter), fp.class_path(adapter), fp.module_digest(adapter),
                        fp.Fingerprinter().digest({"cls": type(adapter), "fn": renderer.RendererAdapter.forward})))
        own.append(fp.class_path(adapter))
    assert digests[0] == digests[1]
    assert own[0].startswith("moviedreamer_core.renderer") and "ComfyUI" not in own[0], own[0]
    linear = torch.nn.Linear(2, 2)
    assert plain.class_path(linear) == "torch.nn.modules.linear.Linear|torch.nn.modules.module.Module", \
        "a class outside the pack keeps its full module name"
