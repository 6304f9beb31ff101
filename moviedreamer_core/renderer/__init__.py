"""The identity-preserving renderer's adapter (MovieDreamer sections 3.2 and 3.4), pure torch.

The host side (patching a ComfyUI MODEL's cross-attention, sampling) lives in ``nodes/``.
"""

from .adapter import RendererAdapter, RendererConfig, load_renderer, place_features, read_renderer_config, save_renderer
from .faceid import faceid_state_from_adapter
from .ipadapter import adapter_from_ipadapter, ipadapter_state_from_adapter

__all__ = ["RendererAdapter", "RendererConfig", "load_renderer", "place_features", "read_renderer_config", "save_renderer",
           "adapter_from_ipadapter", "ipadapter_state_from_adapter", "faceid_state_from_adapter"]
