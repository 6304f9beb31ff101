"""The toy cinema's decoder model in the host's own classes (the loader node is ``toycinema_nodes.py``).

The toy world (``moviedreamer_core/toycinema``) renders 32x32 keyframes. Its decoder is a small SD1.5-layout
UNet (``comfy.model_base.BaseModel``, the host's discrete eps schedule) working directly on pixels, with the
host's pixel-space "VAE" (pixels are the latents), so the render node samples it with the host's own samplers
exactly as it samples a user's SDXL. The host's model detection knows only real-size families, so the UNet
file carries its configuration in its safetensors metadata and this module builds the model from it.

The UNet predicts ``v`` (the host's ``V_PREDICTION`` model type) rather than the noise: from pure noise an
eps-predicting model's clean-image estimate is the noisy input minus sigma (up to 14.6) times its noise
estimate, so every small error is multiplied and the keyframe's global colours, which are decided at high
noise, drift. v-prediction blends the input and the network's output so the estimate stays well scaled at
every noise level (Salimans & Ho 2022). Older files without the ``PREDICTION_KEY`` entry are eps models.

The toy world renders with a fixed, empty text condition (zeros): what a keyframe shows comes from its tokens
and its characters' identities through the renderer adapter. The loader hands that condition out as
``positive``/``negative`` so a toy workflow needs no text encoder.
"""

from __future__ import annotations

import json
import os

import torch

import comfy.latent_formats
import comfy.model_base
import comfy.sd
import comfy.supported_models_base
from ..moviedreamer_core.text_files import loads_json_object
from . import host

METADATA_KEY = "moviedreamer_toy_unet"
PREDICTION_KEY = "moviedreamer_toy_prediction"
#: What the UNet predicts -> the host's model type (its noise schedule stays SD's discrete one).
PREDICTIONS = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION}
DEFAULT_PREDICTION = "v"
PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The shipped toy weights: the tokenizer, identity embedder, probe and UNet here; the renderer and planner in
#: ``moviedreamer/``, which is added to the host's models/moviedreamer search path (after the user's folders).
WEIGHTS_DIR = os.path.join(PACK_DIR, "moviedreamer_core", "toycinema", "weights")
TOY_MODEL_DIR = os.path.join(WEIGHTS_DIR, "moviedreamer")
UNET_FILE = "toycinema_unet.safetensors"
RENDERER_FILE = "toycinema_renderer.safetensors"
PLANNER_FILE = "toycinema_planner.safetensors"
TOKENIZER_FILE = "toycinema_tokenizer.safetensors"
IDENTITY_FILE = "toycinema_identity.safetensors"
PROBE_FILE = "toycinema_probe.safetensors"

#: About 1.5 M parameters. 32 channels at 32x32 and 16x16 and 64 at 8x8, where a figure is a pixel or two wide
#: and most of the capacity sits (two residual blocks, self-attention); tokens and identities enter through the
#: cross-attention at 16x16 and 8x8 (and the middle). No residual block at 32x32 on the way down (the skip from
#: the input convolution still reaches the last block): the full-resolution convolutions were most of the
#: compute. The UNet's forward and backward at batch 32 take 0.5 s on two CPU cores (1.0 s for the earlier 32-64-64 layout).
TOY_UNET = dict(image_size=32, in_channels=3, out_channels=3, model_channels=32, num_res_blocks=[0, 1, 2],
                channel_mult=[1, 1, 2], transformer_depth=[1, 1, 1], transformer_depth_output=[0, 1, 1, 1, 1, 1],
                disable_self_attentions=[False, True, False], transformer_depth_middle=1, use_spatial_transformer=True,
                use_linear_in_transformer=True, context_dim=64, num_head_channels=32, legacy=False, use_checkpoint=False,
                adm_in_channels=None, num_classes=None)


class ToyPixelModel(comfy.supported_models_base.BASE):
    """The model family of the toy UNet: RGB pixels as latents (identity scaling), the SD noise schedule."""

    unet_config: dict = {}
    unet_extra_config: dict = {}
    latent_format = comfy.latent_formats.ChromaRadiance


def init_from_scratch_(model: torch.nn.Module) -> None:
    """PyTorch's default initialisation for every layer (the host builds layers uninitialised), then zero the
    last layer of every residual branch and the output, as diffusion UNets are initialised for training."""
    with torch.no_grad():
        for m in model.modules():
            for cls in (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm):
                if isinstance(m, cls):
                    cls.reset_parameters(m)
                    break
        unet = model.diffusion_model
        zero = [unet.out[-1]] + [m.out_layers[-1] for m in unet.modules() if hasattr(m, "out_layers")]
        for m in zero:
            for p in m.parameters():
                p.zero_()


def build_toy_unet(unet_config: dict | None = None, state: dict | None = None, seed: int = 0,
                   prediction: str = DEFAULT_PREDICTION):
    """A ``ModelPatcher`` around the toy ``BaseModel``: with ``state`` loaded, else freshly initialised.
    ``prediction``: ``"v"`` or ``"eps"`` (see the module docstring)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {sorted(PREDICTIONS)}, got {prediction!r}")
    config = dict(unet_config or TOY_UNET, dtype=torch.float32)
    model = comfy.model_base.BaseModel(ToyPixelModel(config), model_type=PREDICTIONS[prediction], device="cpu")
    model.model_config.native_size = int(config["image_size"])  # IdentityDiffusionRender refuses other sizes
    if state is None:
        torch.manual_seed(seed)
        init_from_scratch_(model)
    else:
        missing, unexpected = model.diffusion_model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"toy UNet weights do not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return host.managed(model)


def prediction_of(patcher) -> str:
    """``"v"`` or ``"eps"``: what the toy model in ``patcher`` predicts."""
    kind = patcher.model.model_type
    return next(name for name, t in PREDICTIONS.items() if t == kind)


def save_toy_unet(patcher, path: str, unet_config: dict | None = None) -> None:
    from ..moviedreamer_core.files import save_safetensors

    state = {k: v.detach().float().contiguous().cpu() for k, v in patcher.model.diffusion_model.state_dict().items()}
    save_safetensors(state, path, metadata={METADATA_KEY: json.dumps(unet_config or TOY_UNET), PREDICTION_KEY: prediction_of(patcher)})


def load_toy_unet(path: str):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise ValueError(f"{os.path.basename(path)} is not a toy cinema UNet file (no {METADATA_KEY} metadata)")
        state = {k: f.get_tensor(k) for k in f.keys()}
    config = loads_json_object(meta[METADATA_KEY], f"{path}: its '{METADATA_KEY}' metadata")  # names the file
    return build_toy_unet(config, state, prediction=meta.get(PREDICTION_KEY, "eps"))


def pixel_vae() -> comfy.sd.VAE:
    """The host's pixel-space VAE: IMAGE 0..1 <-> latents -1..1, no weights."""
    return comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})


def text_context(unet_config: dict | None = None) -> torch.Tensor:
    """The toy world's fixed text condition: one zero token of the UNet's context width."""
    return torch.zeros(1, 1, int((unet_config or TOY_UNET)["context_dim"]))


def weights_path(name: str, folder: str | None = None) -> str:
    path = os.path.join(folder or WEIGHTS_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"toy cinema file {name} not found in {folder or WEIGHTS_DIR}; "
                                "retrain the toy models with: python cli/toycinema_train.py")
    return path


def register_toy_models() -> None:
    """Add the shipped toy renderer and planner folder to models/moviedreamer, after the user's folders (new
    files are still saved in the first folder, never among the pack's files)."""
    host.register_model_folder(extra_last=TOY_MODEL_DIR)
