"""Image-to-video backends for ShotAnimate, through the host's own conditioning nodes (paper section 3.5).

A backend turns one shot (its keyframes, its frame count, its clips) into a stream of frames. Each clip is
made by the host's image-to-video conditioning (here: ``WanImageToVideo``), sampled with the host's sampler
and decoded with the user's VAE. A long shot is chained: every clip after the first starts from the last
frame of the one before, while the shot's keyframe stays the fixed identity anchor (its CLIP-vision
conditioning, when a CLIP Vision model is connected), as the paper does against drift.

Supported: Wan 2.1/2.2 image-to-video (``WanImageToVideo``) and Stable Video Diffusion
(``SVD_img2vid_Conditioning``). LTX-Video is detected and refused with a clear message until its backend lands.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

import comfy.model_base

from ..moviedreamer_core.storyboard import derive_seed
from . import host


def detect_backend(model) -> str:
    """``"wan"`` for a Wan image-to-video model; a clear error for anything that cannot animate an image."""
    base = model.model
    if isinstance(base, comfy.model_base.WAN21) and getattr(base, "image_to_video", False):
        return "wan"
    if isinstance(base, comfy.model_base.SVD_img2vid):
        return "svd"
    name = type(base).__name__
    if isinstance(base, comfy.model_base.WAN21):
        raise ValueError(f"this Wan model ({name}) is text-to-video; ShotAnimate needs an image-to-video model "
                         "(e.g. wan2.1_i2v_480p)")
    if "LTXV" in name:
        raise ValueError(f"the {name} backend is not supported yet; use a Wan 2.1/2.2 image-to-video model, or the animatic")
    raise ValueError(f"this MODEL ({name}) cannot animate an image: connect a Wan image-to-video model, or choose the "
                     "animatic backend")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).float().div(255.0)[None]


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def wan_backend(model, vae, positive, negative, *, clip_vision=None, steps: int, cfg: float, sampler_name: str,
                scheduler: str, seed: int, size: tuple[int, int]):
    """A ``make_movie`` backend that animates each shot with the host's ``WanImageToVideo`` conditioning."""
    from comfy_extras.nodes_wan import WanImageToVideo

    width, height = size

    def backend(timing, shot, keyframes, previous_last) -> Iterator[np.ndarray]:
        anchor = clip_vision.encode_image(_to_tensor(keyframes[0])) if clip_vision is not None else None
        start = _to_tensor(keyframes[0])
        for c, clip in enumerate(timing.clips):
            length = 4 * math.ceil((clip.length - 1) / 4) + 1  # Wan makes 4k+1 frames
            pos, neg, latent = WanImageToVideo.execute(positive, negative, vae, width, height, length, 1,
                                                       start_image=start, clip_vision_output=anchor).args
            samples = host.sample_latent(model, derive_seed(seed, timing.shot_index * 1000 + c, "animate"), steps, cfg,
                                         sampler_name, scheduler, pos, neg, latent["samples"])
            frames = vae.decode(samples).reshape(-1, height, width, 3)[:clip.length].float().cpu()
            for frame in _to_uint8(frames[0 if c == 0 else 1:]):
                yield frame
            start = frames[-1:]

    return backend


def svd_backend(model, vae, clip_vision, *, steps: int, cfg: float, sampler_name: str, scheduler: str, seed: int,
                size: tuple[int, int], fps: float, motion_bucket_id: int = 127, augmentation_level: float = 0.0):
    """A ``make_movie`` backend with Stable Video Diffusion through the host's ``SVD_img2vid_Conditioning``.

    The shot's keyframe gives the CLIP image embedding of *every* clip (the fixed identity anchor); a chained
    clip's start image, the concatenated latent, is the previous clip's last frame."""
    import node_helpers
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning

    width, height = size
    conditioning = SVD_img2vid_Conditioning()

    def backend(timing, shot, keyframes, previous_last) -> Iterator[np.ndarray]:
        anchor = _to_tensor(keyframes[0])
        start = anchor
        for c, clip in enumerate(timing.clips):
            pos, neg, latent = conditioning.encode(clip_vision, anchor, vae, width, height, clip.length, motion_bucket_id,
                                                   max(1, int(round(fps))), augmentation_level)
            if c > 0:
                start_latent = vae.encode(start[:, :, :, :3])
                pos = node_helpers.conditioning_set_values(pos, {"concat_latent_image": start_latent})
                neg = node_helpers.conditioning_set_values(neg, {"concat_latent_image": torch.zeros_like(start_latent)})
            samples = host.sample_latent(model, derive_seed(seed, timing.shot_index * 1000 + c, "animate"), steps, cfg,
                                         sampler_name, scheduler, pos, neg, latent["samples"])
            frames = vae.decode(samples).reshape(-1, height, width, 3)[:clip.length].float().cpu()
            for frame in _to_uint8(frames[0 if c == 0 else 1:]):
                yield frame
            start = frames[-1:]

    return backend


def make_backend(model, vae, positive, negative, clip_vision, fps: float, **settings):
    """The backend for a connected MODEL (see ``detect_backend``), after checking what it needs."""
    kind = detect_backend(model)
    needs = {"wan": (("vae", vae), ("positive", positive), ("negative", negative)),
             "svd": (("vae", vae), ("clip_vision", clip_vision))}[kind]
    missing = [name for name, value in needs if value is None]
    if missing:
        raise ValueError(f"the {kind} image-to-video backend needs {', '.join(missing)} connected")
    multiple = 16 if kind == "wan" else 8
    if settings["size"][0] % multiple or settings["size"][1] % multiple:
        raise ValueError(f"{kind} needs keyframes whose width and height are multiples of {multiple}; got "
                         f"{settings['size'][0]}x{settings['size'][1]}")
    if kind == "svd":
        return kind, svd_backend(model, vae, clip_vision, fps=fps, **settings)
    return kind, wan_backend(model, vae, positive, negative, clip_vision=clip_vision, **settings)
