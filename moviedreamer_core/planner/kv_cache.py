"""The planner's KV cache: transformers' ``DynamicCache`` with layers that append in place.

``DynamicCache`` grows each layer with ``torch.cat``, which copies the whole cache on every decoding step:
the per-step cost then grows with the context, even though the attention itself is cheap at planner sizes
(profiled on CPU: at 400 cached positions the copies were half of a step). Our ``AppendLayer`` keeps keys
and values in a buffer with spare room (capacity doubles when full, so appends cost amortised O(new
tokens)) and hands attention a view of the filled part. The values are exactly those ``torch.cat`` would
give, so cached decoding still equals full recomputation (tested in ``tests/core/test_planner.py``).

With the sliding window of ``generate.py`` the cache never holds more than the header plus ``2W``
keyframes, so the buffer stops growing after the first window and is dropped at every rebuild.

transformers 4.x (no per-layer cache objects) falls back to a plain ``DynamicCache``.
"""

from __future__ import annotations

import torch


def _append_layer_class():
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers 4.x
        return None

    class AppendLayer(DynamicLayer):
        """A ``DynamicLayer`` whose ``update`` writes into preallocated room instead of concatenating."""

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self._k = self._v = None
            self._n = 0

        def _reserve(self, like: torch.Tensor, n: int) -> torch.Tensor:
            shape = list(like.shape)
            shape[-2] = max(n, 64)
            return like.new_empty(shape)

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, new = self._n, key_states.shape[-2]
            if self._k is None or n + new > self._k.shape[-2]:
                k, v = self._reserve(key_states, 2 * (n + new)), self._reserve(value_states, 2 * (n + new))
                if n:
                    k[..., :n, :] = self._k[..., :n, :]
                    v[..., :n, :] = self._v[..., :n, :]
                self._k, self._v = k, v
            self._k[..., n:n + new, :] = key_states
            self._v[..., n:n + new, :] = value_states
            self._n = n + new
            self.keys, self.values = self._k[..., :self._n, :], self._v[..., :self._n, :]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._n if self.is_initialized else 0

        def crop(self, tokens_to_remove: int) -> None:  # not used by the planner; kept coherent
            super().crop(tokens_to_remove)
            if self.is_initialized:
                self._n = self.keys.shape[-2]

    return AppendLayer


_AppendLayer = _append_layer_class()


def new_cache(model):
    """An empty KV cache for ``model.backbone`` (a ``KeyframePlanner``)."""
    from transformers.cache_utils import DynamicCache

    try:
        cache = DynamicCache(config=model.backbone.config)
    except TypeError:  # transformers 4.x
        return DynamicCache()
    if _AppendLayer is None:
        return cache
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is _AppendLayer.__base__ for layer in layers):
        cache.layers = [_AppendLayer() for _ in layers]
    elif not layers and getattr(cache, "layer_class_to_replicate", None) is _AppendLayer.__base__:
        cache.layer_class_to_replicate = _AppendLayer
    return cache
