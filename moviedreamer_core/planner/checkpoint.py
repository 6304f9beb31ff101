"""Planner files: safetensors weights with the whole configuration in the metadata.

A planner file is self-describing (``PlannerConfig`` as JSON under ``moviedreamer_planner``), so the loader
rebuilds the exact model and can check its spaces *before* reading any weights. Only safetensors is read:
no pickle, ever.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import torch
from safetensors import safe_open

from ..files import save_safetensors
from ..spaces import EmbeddingSpace, TokenSpace, require_same_space
from ..state_shapes import require_matching_shapes
from ..text_files import loads_json_object
from .config import PlannerConfig
from .model import KeyframePlanner

METADATA_KEY = "moviedreamer_planner"


def save_planner(model: KeyframePlanner, path: str, extra: Optional[dict] = None) -> None:
    """Write weights + config atomically (a temporary file renamed into place)."""
    save_planner_state(model.state_dict(), model.cfg, path, extra)


def save_planner_state(state_dict: dict, cfg: PlannerConfig, path: str, extra: Optional[dict] = None) -> None:
    """``save_planner`` from a bare state dict (e.g. one gathered from a sharded training run)."""
    state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {METADATA_KEY: cfg.to_json(), "format": "moviedreamer-planner"}
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    save_safetensors(state, path, metadata=meta)


def read_metadata(path: str, what: str) -> dict:
    """The metadata of the safetensors file ``path``; a file that is not one (a download cut short, a damaged copy,
    offsets that overlap) is a ``ValueError`` naming it, not the library's bare "Error while deserializing header"."""
    from safetensors import SafetensorError

    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata() or {}
    except SafetensorError as e:
        raise ValueError(f"the {what} file {os.path.basename(path)} is not a whole safetensors file ({e}): a download "
                         "cut short or a damaged copy? Download or copy it again") from None


def read_planner_config(path: str) -> PlannerConfig:
    """The configuration of a planner file, without loading its weights."""
    meta = read_metadata(path, "planner")
    if METADATA_KEY not in meta:
        raise ValueError(f"{os.path.basename(path)} is not a MovieDreamer planner file (no '{METADATA_KEY}' metadata)")
    try:
        d = loads_json_object(meta[METADATA_KEY], f"its configuration ('{METADATA_KEY}' metadata)")
        d.setdefault("inputs", [])  # written before planner files declared their inputs: it reads none of them
        return PlannerConfig.from_dict(d)
    except ValueError as e:
        raise ValueError(f"planner file {os.path.basename(path)}: {e}") from e


def load_planner(path: str, *, expect_text_space: Optional[EmbeddingSpace] = None,
                 expect_identity_space: Optional[EmbeddingSpace] = None,
                 expect_token_space: Optional[TokenSpace] = None, device: str | torch.device = "cpu") -> KeyframePlanner:
    """Load a planner; refuse it (before reading weights) when its spaces differ from the expected ones."""
    cfg = read_planner_config(path)
    name = os.path.basename(path)
    if expect_text_space is not None:
        require_same_space("text", EmbeddingSpace.from_dict(cfg.text_space), expect_text_space, f"the planner {name}", "the script")
    if expect_identity_space is not None:
        require_same_space("identity", EmbeddingSpace.from_dict(cfg.identity_space), expect_identity_space,
                           f"the planner {name}", "the script")
    if expect_token_space is not None:
        require_same_space("token", TokenSpace.from_dict(cfg.token_space), expect_token_space, f"the planner {name}",
                           "the renderer")
    require_matching_shapes(lambda: KeyframePlanner(cfg), path)
    model = KeyframePlanner(cfg)
    state = {}
    with safe_open(path, framework="pt") as f:
        for key in f.keys():
            state[key] = f.get_tensor(key)
    model.load_state_dict(state, strict=True)  # the same tensors, shape for shape: require_matching_shapes
    return model.to(device).eval()
