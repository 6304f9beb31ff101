"""Fingerprints: short, stable digests of everything that determines a keyframe or a shot, models included.

A keyframe or shot on disk is reused only when its *signature* matches, so the signature must change whenever
anything that determines the output changes: a model's weights, a patch on it (a LoRA, a sampling override), a
conditioning, a setting. Hashing every weight of an SD1.5 UNet would take a second or more on each run, so models
are fingerprinted by their weights *sampled*:

* **Weights** (``tensor_sample_digest``): each tensor's name, shape and dtype, and up to ``WEIGHT_SAMPLES`` of its
  elements spread evenly over it (all of a small tensor), as their raw bytes. Two checkpoints, a fine-tune, a merge,
  or a LoRA merged into the weights differ in practically every element of the layers they touch, so the samples
  tell them apart; the cost is a few microseconds per tensor, whatever its size.
* **A module's weights** (``module_digest``) are cached per module object, keyed on each tensor's identity (data
  pointer and version counter): a model loaded once is sampled once; moved to another device or changed in place
  (training), it is sampled again.
* **Everything else** (``Fingerprinter.value``): data tensors (conditioning, images, masks) hashed whole; numbers,
  strings, lists, dicts, dataclasses and plain objects by their contents; functions by their code, their defaults and
  what their closures hold; modules by their weights. Anything that can not be read stably (an object whose only
  description is its address) counts by its identity: it can cause a redundant re-render after a restart, never a
  stale reuse.

Nothing here knows the host: ``nodes/model_fingerprints.py`` adds its model classes (ModelPatcher, CLIP, VAE...).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import types
import weakref
from typing import Iterable, Optional

import numpy as np
import torch

#: Elements sampled from each weight tensor.
WEIGHT_SAMPLES = 1024
#: Data tensors (conditioning, images) larger than this many elements are sampled like weights, with this many.
DATA_FULL_LIMIT = 1 << 26
#: How deep ``Fingerprinter.value`` follows plain objects' attributes.
MAX_DEPTH = 12
#: Bump when the recipe changes: every signature changes with it (one re-render of existing projects).
FINGERPRINT_VERSION = 1


def _bytes_of(t: torch.Tensor) -> bytes:
    t = t.detach()
    try:
        return t.contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes()
    except (RuntimeError, TypeError, NotImplementedError):  # tensor subclasses (quantised weights) that refuse a view
        return t.float().contiguous().cpu().numpy().tobytes()


def tensor_sample_digest(t: torch.Tensor, samples: int = WEIGHT_SAMPLES) -> bytes:
    """Shape, dtype and up to ``samples`` evenly spread elements of ``t`` (all of them if it is small)."""
    t = t.detach()
    head = f"{tuple(t.shape)}|{t.dtype}|".encode()
    n = t.numel()
    if n <= samples:
        return head + _bytes_of(t)
    try:
        flat = t.reshape(-1)
        step = n // samples
        picked = flat[::step][:samples]
    except (RuntimeError, TypeError, NotImplementedError):
        picked = t.float().reshape(-1)[:: n // samples][:samples]
    return head + _bytes_of(picked)


def tensor_digest(t: torch.Tensor) -> bytes:
    """A data tensor whole (shape, dtype, every byte), or sampled beyond ``DATA_FULL_LIMIT`` elements."""
    if t.numel() > DATA_FULL_LIMIT:
        return tensor_sample_digest(t, DATA_FULL_LIMIT // 16)
    return f"{tuple(t.shape)}|{t.dtype}|".encode() + _bytes_of(t)


def _identity(t: torch.Tensor) -> tuple:
    """What says a tensor is still the one sampled: its storage, its place in it, its version counter."""
    try:
        version = t._version
    except RuntimeError:  # inference tensors keep no version counter (and can not be changed in place)
        version = -1
    try:
        ptr = t.data_ptr()
    except RuntimeError:
        ptr = id(t)
    return ptr, t.storage_offset() if t.layout == torch.strided else 0, tuple(t.shape), t.dtype, version


_module_cache: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def module_tensors(module: torch.nn.Module, substitutes: Optional[dict] = None,
                   skip_prefixes: Iterable[str] = ()) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every parameter and buffer of ``module`` (state-dict names), ``substitutes[name]`` in
    place of the module's own where given (a patched weight's original), names under ``skip_prefixes`` left out."""
    skip = tuple(p.rstrip(".") + "." for p in skip_prefixes)
    substitutes = substitutes or {}
    found = []
    seen = set()
    for kind in (module.named_parameters, module.named_buffers):
        for name, t in kind(remove_duplicate=False):
            if t is None or name in seen or (skip and name.startswith(skip)):
                continue
            seen.add(name)
            found.append((name, substitutes.get(name, t)))
    return found


def module_digest(module: torch.nn.Module, substitutes: Optional[dict] = None, skip_prefixes: Iterable[str] = ()) -> str:
    """Sampled digest of a module's weights (see ``module_tensors``), cached per module while its tensors are the
    same ones (a model sampled once per load)."""
    tensors = module_tensors(module, substitutes, skip_prefixes)
    probe = tuple((name, _identity(t)) for name, t in tensors)
    cache = _module_cache.setdefault(module, {})
    key = (tuple(skip_prefixes), hash(probe))
    hit = cache.get(key)
    if hit is not None and hit[0] == probe:
        return hit[1]
    h = hashlib.sha256(_qualname(module).encode())
    with torch.no_grad():
        for name, t in tensors:
            h.update(name.encode() + b"\x00")
            h.update(tensor_sample_digest(t))
    digest = h.hexdigest()
    if len(cache) > 8:
        cache.clear()
    cache[key] = (probe, digest)
    return digest


#: The pack's own module names start with this prefix when the host loads the pack as a custom node: it imports the
#: pack's folder under a module name made of its full path (the host's ``nodes.py``: ``module_path.replace(".",
#: "_x_")``), so ``<that path>.moviedreamer_core.x``. Empty when the pack's folder is on ``sys.path`` (tests, CLI).
_PACK_PREFIX = __name__[: -len("moviedreamer_core.fingerprint")] if __name__.endswith(".moviedreamer_core.fingerprint") else ""


def module_name(module: Optional[str]) -> str:
    """A module's name as it enters a fingerprint: the pack's own modules without the prefix of the folder the pack
    is installed in (``nodes.x``, ``moviedreamer_core.x`` wherever the pack sits, so instances installed at other
    paths, e.g. a distributed run's workers, sign keyframes alike); every other module's name as it is."""
    module = module or ""
    if _PACK_PREFIX and module.startswith(_PACK_PREFIX):
        return module[len(_PACK_PREFIX):]
    return module


def _qualname(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{module_name(cls.__module__)}.{cls.__qualname__}"


def class_path(obj) -> str:
    """The qualified names of an object's class and its bases (classes made inside a function, like the host's
    ``ModelSamplingAdvanced``, share one name; their bases tell them apart)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return "|".join(_qualname(c) for c in cls.__mro__ if c is not object)


class Fingerprinter:
    """Digests of arbitrary values (see the module's docstring). Subclasses add handlers for special types with
    ``special(value) -> str | None``. ``weights=True`` samples tensors (model weights, patches) instead of hashing
    them whole."""

    def __init__(self):
        self._stack: list[int] = []

    def special(self, value) -> Optional[str]:
        return None

    def digest(self, value, weights: bool = False) -> str:
        h = hashlib.sha256(f"fingerprint-v{FINGERPRINT_VERSION}".encode())
        self._walk(value, h, 0, weights)
        return h.hexdigest()

    def _walk(self, value, h, depth: int, weights: bool) -> None:
        update = h.update
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            update(f"{type(value).__name__}:{value!r};".encode())
            return
        if isinstance(value, torch.Tensor):
            update(b"T" + (tensor_sample_digest(value) if weights else tensor_digest(value)) + b";")
            return
        if isinstance(value, np.ndarray):
            update(f"N{value.shape}|{value.dtype}|".encode() + np.ascontiguousarray(value).tobytes() + b";")
            return
        if isinstance(value, np.generic):
            update(f"n{value.dtype}:{value.item()!r};".encode())
            return
        if isinstance(value, (torch.dtype, torch.device, torch.Size)):
            update(f"{value!r};".encode())
            return
        if isinstance(value, enum.Enum):
            update(f"E{_qualname(value)}.{value.name};".encode())
            return
        if depth > MAX_DEPTH or id(value) in self._stack:
            update(f"<{_qualname(value)} at depth {depth}: {id(value)}>;".encode())
            return
        self._stack.append(id(value))
        try:
            special = self.special(value)
            if special is not None:
                update(f"S{_qualname(value)}:{special};".encode())
            elif isinstance(value, torch.nn.Module):
                update(f"M{class_path(value)}:{module_digest(value)};".encode())
                self._walk(_plain_attributes(value), h, depth + 1, weights)
            elif isinstance(value, dict):
                update(f"D{len(value)}{{".encode())
                for key, item in sorted(value.items(), key=lambda kv: repr(kv[0])):
                    self._walk(key, h, depth + 1, weights)
                    self._walk(item, h, depth + 1, weights)
                update(b"};")
            elif isinstance(value, (list, tuple)):
                update(f"L{type(value).__name__}{len(value)}[".encode())
                for item in value:
                    self._walk(item, h, depth + 1, weights)
                update(b"];")
            elif isinstance(value, (set, frozenset)):
                update(f"Z{len(value)}:{sorted(repr(v) for v in value)!r};".encode())
            elif isinstance(value, functools.partial):
                update(b"P")
                self._walk((value.func, value.args, value.keywords), h, depth + 1, weights)
            elif isinstance(value, types.MethodType):
                update(f"B{value.__func__.__qualname__}".encode())
                self._walk(value.__func__, h, depth + 1, weights)
                self._walk(value.__self__, h, depth + 1, weights)
            elif isinstance(value, types.FunctionType):
                self._function(value, h, depth, weights)
            elif isinstance(value, types.ModuleType):
                update(f"F.{module_name(value.__name__)};".encode())
            elif isinstance(value, (types.BuiltinFunctionType, type)):
                update(f"F{module_name(getattr(value, '__module__', ''))}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))};".encode())
            elif dataclasses.is_dataclass(value):
                update(f"C{_qualname(value)}".encode())
                self._walk({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, h, depth + 1, weights)
            elif hasattr(value, "__dict__") or hasattr(type(value), "__slots__"):
                update(f"O{class_path(value)}".encode())
                self._walk(_plain_attributes(value), h, depth + 1, weights)
            else:
                text = repr(value)
                update((f"R{text};" if " at 0x" not in text else f"<{_qualname(value)}: {id(value)}>;").encode())
        finally:
            self._stack.pop()

    def _function(self, fn: types.FunctionType, h, depth: int, weights: bool) -> None:
        code = fn.__code__
        h.update(f"f{module_name(fn.__module__)}.{fn.__qualname__}".encode())
        h.update(hashlib.sha256(code.co_code + repr(_constants(code)).encode()).digest())
        self._walk((fn.__defaults__, fn.__kwdefaults__), h, depth + 1, weights)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # an empty cell
                cells.append(None)
        self._walk(cells, h, depth + 1, weights)


def _constants(code: types.CodeType) -> tuple:
    return tuple(_constants(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)


def _plain_attributes(obj) -> dict:
    """An object's own attributes (``__dict__`` and ``__slots__``), without a module's submodule/parameter tables
    (its weights are digested on their own)."""
    found = {}
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) if isinstance(getattr(cls, "__slots__", ()), (tuple, list)) else ():
            if hasattr(obj, slot) and slot not in ("__dict__", "__weakref__"):
                found[slot] = getattr(obj, slot)
    found.update(getattr(obj, "__dict__", {}))
    if isinstance(obj, torch.nn.Module):
        for table in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_forward_hooks",
                      "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
                      "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_state_dict_pre_hooks",
                      "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
                      "_is_full_backward_hook"):
            found.pop(table, None)
    return found


def combine(parts: dict) -> str:
    """One digest of named fingerprints (``{"model": "...", "vae": "..."}``)."""
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()

