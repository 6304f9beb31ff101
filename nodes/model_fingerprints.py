"""Fingerprints of the host's models, for the signatures that decide whether a keyframe or shot is reused.

``fingerprint(value)`` digests a MODEL, CLIP, VAE, CLIP_VISION, CONDITIONING or anything else (see
``moviedreamer_core/fingerprint.py`` for the recipe). A model's fingerprint is its weights *as loaded*, sampled
(cached per loaded model), plus everything the patcher adds on top of them:

* ``patches`` (LoRAs, merges: ``add_patches``), sampled like weights, with their strengths;
* ``object_patches`` (e.g. ModelSamplingDiscrete's sampling override) and the sampling the model really uses;
* ``model_options`` (attention and block patches, CFG functions, wrappers) and hooks, by their contents;
* the model's class, type (eps / v-prediction ...), dtype and configuration.

A weight the patcher has patched in place is read from the patcher's backup of the original, so a model whose LoRA
is currently applied fingerprints like the same model before loading. A CLIP adds its layer choice
(CLIPSetLastLayer) and tokenizer options, a VAE its dtype and compression, CLIP Vision its preprocessing.
"""

from __future__ import annotations

from typing import Optional

import comfy.clip_vision
import comfy.sd

from ..moviedreamer_core.fingerprint import Fingerprinter, class_path, combine, module_digest
from . import host

#: Patcher attributes that can change what a model computes, digested by content.
PATCHER_OPTIONS = ("weight_wrapper_patches", "model_options", "hook_patches", "forced_hooks", "additional_models",
                   "injections", "wrappers", "callbacks", "force_cast_weights", "hook_mode")
#: Base-model attributes that change what it computes without changing its weights.
MODEL_ATTRIBUTES = ("model_type", "manual_cast_dtype", "latent_format", "adm_channels", "model_config",
                    "concat_keys", "image_to_video")


class HostFingerprinter(Fingerprinter):
    def special(self, value) -> Optional[str]:
        if host.is_model_patcher(value):
            return self.patcher(value)
        if isinstance(value, comfy.sd.CLIP):
            return self.clip(value)
        if isinstance(value, comfy.sd.VAE):
            return self.vae(value)
        if isinstance(value, comfy.clip_vision.ClipVisionModel):
            return self.clip_vision(value)
        return None

    def patcher(self, p) -> str:
        base = p.model
        skip = set(p.object_patches) | set(getattr(p, "object_patches_backup", {})) | {"model_sampling"}
        originals = {k: b.weight for k, b in getattr(p, "backup", {}).items()}
        originals.update({k: b[0] for k, b in (getattr(p, "hook_backup", None) or {}).items()})
        parts = {
            "class": class_path(base),
            "weights": module_digest(base, originals, sorted(skip)),
            "attributes": self.digest({k: getattr(base, k, None) for k in MODEL_ATTRIBUTES}),
            "patches": self.digest(p.patches, weights=True),
            "object_patches": self.digest(p.object_patches, weights=True),
            "options": self.digest({k: getattr(p, k, None) for k in PATCHER_OPTIONS}),
        }
        try:
            parts["dtype"] = str(p.model_dtype())
        except (AttributeError, RuntimeError, TypeError):
            pass
        try:  # the sampling the model really uses (an object patch, or its own)
            parts["sampling"] = self.digest(p.get_model_object("model_sampling"))
        except AttributeError:
            pass
        return combine(parts)

    def clip(self, clip) -> str:
        return combine({"patcher": self.patcher(clip.patcher), "tokenizer": class_path(clip.tokenizer),
                        "settings": self.digest({k: getattr(clip, k, None) for k in (
                            "layer_idx", "tokenizer_options", "use_clip_schedule", "apply_hooks_to_conds")})})

    def vae(self, vae) -> str:
        return combine({"patcher": self.patcher(vae.patcher), "settings": self.digest({k: getattr(vae, k, None) for k in (
            "vae_dtype", "downscale_ratio", "upscale_ratio", "latent_channels", "latent_dim", "output_channels",
            "upscale_index_formula", "downscale_index_formula", "extra_1d_channel", "crop_input", "pad_channel_value")})})

    def clip_vision(self, cv) -> str:
        return combine({"patcher": self.patcher(cv.patcher), "settings": self.digest({k: getattr(cv, k, None) for k in (
            "image_size", "image_mean", "image_std", "model_type", "return_all_hidden_states")})})


def fingerprint(value, weights: bool = False) -> str:
    """A stable digest of a host model, a conditioning, a renderer or any value (``None`` digests as itself)."""
    return HostFingerprinter().digest(value, weights=weights)


def fingerprints(**values) -> dict[str, str]:
    """``{name: fingerprint}`` of the connected values (``None`` ones named so)."""
    return {name: (fingerprint(v) if v is not None else "not connected") for name, v in values.items()}
