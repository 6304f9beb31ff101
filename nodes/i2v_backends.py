"""Image-to-video backends for ShotAnimate, through the host's own conditioning nodes (paper section 3.5).

A backend turns one shot (its keyframes, its frame count, its clips) into a stream of frames. Each clip is
made by the host's image-to-video conditioning (here: ``WanImageToVideo``), sampled with the host's sampler
and decoded with the user's VAE. A long shot is chained: every clip after the first starts from the last
frame of the one before, while the shot's keyframe stays the fixed identity anchor (its CLIP-vision
conditioning, when a CLIP Vision model is connected), as the paper does against drift.

Supported, each through the host node a user would wire by hand:

* Wan 2.1/2.2 image-to-video (``WanImageToVideo``; ``WanFirstLastFrameToVideo`` for the last clip of a shot
  whose next shot has the ``continuous`` transition, so the motion lands on the next keyframe);
* Stable Video Diffusion (``SVD_img2vid_Conditioning``; optionally ``VideoLinearCFGGuidance``: guidance rising
  over the frames, as SVD workflows use);
* LTX-Video (``LTXVImgToVideo`` and ``LTXVConditioning``'s frame rate; the first latent frame is kept by the
  noise mask the node returns). LTX-Video reads no reference image, so the keyframe anchors only a shot's
  first clip; chained clips start from the previous clip's last frame.
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
    """``"wan"``, ``"wan22"`` (Wan 2.2 TI2V 5B), ``"svd"`` or ``"ltxv"`` from the MODEL; a clear error for anything
    that cannot animate an image."""
    base = model.model
    if isinstance(base, comfy.model_base.WAN22) and getattr(base, "image_to_video", False):
        # Wan 2.2 TI2V 5B: 48-channel latents at 1/16 with the Wan 2.2 VAE, no image channels in its input: the start
        # image is the first latent frame, kept by a noise mask (the host's Wan22ImageToVideoLatent), not
        # WanImageToVideo's concat (which this model never reads)
        return "wan22"
    if isinstance(base, comfy.model_base.WAN21) and (getattr(base, "image_to_video", False) or _reads_start_image(base)):
        return "wan"
    if isinstance(base, comfy.model_base.SVD_img2vid):
        return "svd"
    if type(base) is comfy.model_base.LTXV:  # subclasses (LTXAV...) take other conditioning
        return "ltxv"
    name = type(base).__name__
    if isinstance(base, comfy.model_base.WAN21):
        raise ValueError(f"this Wan model ({name}) is text-to-video; ShotAnimate needs an image-to-video model "
                         "(e.g. wan2.1_i2v_480p)")
    raise ValueError(f"this MODEL ({name}) cannot animate an image: connect a Wan or LTX-Video image-to-video model or "
                     "SVD, or choose the animatic backend")


def _reads_start_image(base) -> bool:
    """A plain Wan model whose input holds the image channels WanImageToVideo fills (the latent's channels plus the
    4 of the mask: 36 for Wan's 16), though the host built it as text-to-video: Wan 2.2 I2V A14B has no CLIP image
    embedding (no ``img_emb``), so the host's detection names it ``t2v`` (``image_to_video`` False), and yet its
    ``concat_cond`` reads the start image as for Wan 2.1 i2v (the host's own Wan 2.2 14B i2v template uses
    WanImageToVideo). Subclasses (camera, VACE, HuMo...) take other conditioning."""
    if type(base) is not comfy.model_base.WAN21:
        return False
    try:
        in_channels = int(base.diffusion_model.patch_embedding.weight.shape[1])
    except AttributeError:
        return False
    latent = int(base.latent_format.latent_channels)
    return in_channels == 2 * latent + 4


def wan_length(n: int) -> int:
    """Wan makes 4k+1 frames: the smallest such length that holds ``n``."""
    return 4 * math.ceil((n - 1) / 4) + 1


def ltxv_length(n: int) -> int:
    """LTX-Video makes 8k+1 frames: the smallest such length that holds ``n``."""
    return 8 * math.ceil((n - 1) / 8) + 1


def keep_ends(frames: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` frames spread evenly over ``frames``, keeping the first and the last: a clip made longer than asked
    (the model's frame-count rule) that must still end on its landing frame."""
    index = torch.linspace(0, frames.shape[0] - 1, n).round().long()
    return frames[index]


#: Frames over which a landing clip eases onto the next keyframe (one latent frame of Wan's VAE: 4 frames).
LANDING_FRAMES = 4


def ease_onto(frames: torch.Tensor, target: torch.Tensor, n: int = LANDING_FRAMES) -> torch.Tensor:
    """The last ``n`` frames blended towards ``target`` ``[1, H, W, C]`` with weights 1/n, 2/n ... 1: the clip ends
    exactly on ``target``. ``WanFirstLastFrameToVideo`` conditions the model on the end image but nothing fixes the
    final frame: a model that drifts (an untrained one ends anywhere; a trained one a little off) would otherwise
    leave a visible jump into the ``continuous`` shot that starts from that keyframe."""
    n = max(1, min(int(n), frames.shape[0] - 1)) if frames.shape[0] > 1 else 1
    weights = torch.arange(1, n + 1, dtype=frames.dtype).div(n).view(n, 1, 1, 1)
    eased = frames.clone()
    eased[-n:] = frames[-n:] * (1 - weights) + target.to(frames.dtype) * weights
    return eased


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).float().div(255.0)[None]


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def wan_backend(model, vae, positive, negative, *, clip_vision=None, steps: int, cfg: float, sampler_name: str,
                scheduler: str, seed: int, size: tuple[int, int]):
    """A ``make_movie`` backend that animates each shot with the host's ``WanImageToVideo`` conditioning, and
    lands a shot on the next keyframe with ``WanFirstLastFrameToVideo`` when ``make_movie`` asks for it (its last
    ``LANDING_FRAMES`` frames eased onto that keyframe, so the shot ends exactly on it: ``ease_onto``)."""
    from comfy_extras.nodes_wan import WanFirstLastFrameToVideo, WanImageToVideo

    width, height = size

    def backend(timing, shot, keyframes, previous_last, next_keyframe=None) -> Iterator[np.ndarray]:
        anchor = clip_vision.encode_image(_to_tensor(keyframes[0])) if clip_vision is not None else None
        start = _to_tensor(keyframes[0])
        for c, clip in enumerate(timing.clips):
            length = wan_length(clip.length)
            lands = next_keyframe is not None and c == len(timing.clips) - 1
            if lands:
                end = _to_tensor(next_keyframe)
                end_anchor = clip_vision.encode_image(end) if clip_vision is not None else None
                pos, neg, latent = WanFirstLastFrameToVideo.execute(
                    positive, negative, vae, width, height, length, 1, start_image=start, end_image=end,
                    clip_vision_start_image=anchor, clip_vision_end_image=end_anchor).args
            else:
                pos, neg, latent = WanImageToVideo.execute(positive, negative, vae, width, height, length, 1,
                                                           start_image=start, clip_vision_output=anchor).args
            samples = host.sample_latent(model, derive_seed(seed, timing.shot_index * 1000 + c, "animate"), steps, cfg,
                                         sampler_name, scheduler, pos, neg, latent["samples"])
            frames = vae.decode(samples).reshape(-1, height, width, 3).float().cpu()
            frames = ease_onto(keep_ends(frames, clip.length), end) if lands else frames[:clip.length]
            for frame in _to_uint8(frames[0 if c == 0 else 1:]):
                yield frame
            start = frames[-1:]

    return backend


def ltxv_backend(model, vae, positive, negative, *, steps: int, cfg: float, sampler_name: str, scheduler: str,
                 seed: int, size: tuple[int, int], fps: float):
    """A ``make_movie`` backend with LTX-Video through the host's ``LTXVImgToVideo`` (and the frame rate that
    ``LTXVConditioning`` sets). The node's noise mask keeps the start image's latent frame fixed while sampling."""
    import node_helpers
    from comfy_extras.nodes_lt import LTXVImgToVideo

    width, height = size
    positive = node_helpers.conditioning_set_values(positive, {"frame_rate": float(fps)})
    negative = node_helpers.conditioning_set_values(negative, {"frame_rate": float(fps)})

    def conditioned(start, clip):
        return LTXVImgToVideo.execute(positive, negative, start, vae, width, height, ltxv_length(clip.length), 1,
                                      1.0).args

    return _masked_start_backend(model, vae, conditioned, steps=steps, cfg=cfg, sampler_name=sampler_name,
                                 scheduler=scheduler, seed=seed, size=size)


def wan22_backend(model, vae, positive, negative, *, steps: int, cfg: float, sampler_name: str, scheduler: str,
                  seed: int, size: tuple[int, int]):
    """A ``make_movie`` backend with Wan 2.2 TI2V 5B through the host's ``Wan22ImageToVideoLatent``: the start
    image's latent frame is written into the latent and kept there by the node's noise mask while sampling."""
    from comfy_extras.nodes_wan import Wan22ImageToVideoLatent

    width, height = size

    def conditioned(start, clip):
        latent = Wan22ImageToVideoLatent.execute(vae, width, height, wan_length(clip.length), 1,
                                                 start_image=start).args[0]
        return positive, negative, latent

    return _masked_start_backend(model, vae, conditioned, steps=steps, cfg=cfg, sampler_name=sampler_name,
                                 scheduler=scheduler, seed=seed, size=size)


def _masked_start_backend(model, vae, conditioned, *, steps: int, cfg: float, sampler_name: str, scheduler: str,
                          seed: int, size: tuple[int, int]):
    """The clip loop of the backends whose host node writes the start image into the latent and keeps it there with a
    noise mask (LTX-Video, Wan 2.2 TI2V 5B): ``conditioned(start, clip)`` gives ``(positive, negative, latent)`` for
    a clip; each clip after the first starts from the previous one's last frame, which it repeats (dropped)."""
    width, height = size

    def backend(timing, shot, keyframes, previous_last) -> Iterator[np.ndarray]:
        start = _to_tensor(keyframes[0])
        for c, clip in enumerate(timing.clips):
            pos, neg, latent = conditioned(start, clip)
            samples = host.sample_latent(model, derive_seed(seed, timing.shot_index * 1000 + c, "animate"), steps, cfg,
                                         sampler_name, scheduler, pos, neg, latent["samples"],
                                         noise_mask=latent["noise_mask"])
            frames = vae.decode(samples).reshape(-1, height, width, 3)[:clip.length].float().cpu()
            for frame in _to_uint8(frames[0 if c == 0 else 1:]):
                yield frame
            start = frames[-1:]

    return backend


def svd_guided_model(model, min_cfg: float):
    """The SVD MODEL with the host's ``VideoLinearCFGGuidance`` when ``min_cfg > 0`` (a clone), else itself."""
    if min_cfg <= 0:
        return model
    from comfy_extras.nodes_video_model import VideoLinearCFGGuidance

    return VideoLinearCFGGuidance().patch(model, min_cfg)[0]


def svd_backend(model, vae, clip_vision, *, steps: int, cfg: float, sampler_name: str, scheduler: str, seed: int,
                size: tuple[int, int], fps: float, motion_bucket_id: int = 127, augmentation_level: float = 0.0,
                min_cfg: float = 0.0):
    """A ``make_movie`` backend with Stable Video Diffusion through the host's ``SVD_img2vid_Conditioning``.

    The shot's keyframe gives the CLIP image embedding of *every* clip (the fixed identity anchor); a chained
    clip's start image, the concatenated latent, is the previous clip's last frame. ``min_cfg > 0`` applies the
    host's ``VideoLinearCFGGuidance``: guidance rises from ``min_cfg`` on the first frame to ``cfg`` on the last."""
    import node_helpers
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning

    width, height = size
    conditioning = SVD_img2vid_Conditioning()
    model = svd_guided_model(model, min_cfg)

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


#: What each backend needs connected, and the multiple its frame width and height must be.
NEEDS = {"wan": ("vae", "positive", "negative"), "wan22": ("vae", "positive", "negative"), "svd": ("vae", "clip_vision"), "ltxv": ("vae", "positive", "negative")}
SIZE_MULTIPLE = {"wan": 16, "wan22": 32, "svd": 8, "ltxv": 32}
#: Which VAE file goes with a backend's model, for the message that refuses another one.
OWN_VAE = {"wan": " (Wan 2.1 and Wan 2.2 14B: wan_2.1_vae)", "wan22": " (Wan 2.2 TI2V 5B: wan2.2_vae)",
           "svd": " (the one in the SVD checkpoint)", "ltxv": " (the one in the LTX-Video checkpoint)"}
#: Backends that can end a shot on a given frame (the ``continuous`` transition).
LANDS_ON_NEXT = {"wan"}


def make_backend(model, vae, positive, negative, clip_vision, fps: float, min_cfg: float = 0.0, **settings):
    """``(kind, backend)`` for a connected MODEL (see ``detect_backend``), after checking what it needs."""
    kind = detect_backend(model)
    given = {"vae": vae, "positive": positive, "negative": negative, "clip_vision": clip_vision}
    missing = [name for name in NEEDS[kind] if given[name] is None]
    if missing:
        raise ValueError(f"the {kind} image-to-video backend needs {', '.join(missing)} connected")
    wanted = model.get_model_object("latent_format").latent_channels
    if getattr(vae, "latent_channels", wanted) != wanted:
        raise ValueError(f"the VAE makes {vae.latent_channels}-channel latents but this {kind} model denoises "
                         f"{wanted}-channel ones: connect the video model's own VAE{OWN_VAE.get(kind, '')}")
    multiple = SIZE_MULTIPLE[kind]
    if settings["size"][0] % multiple or settings["size"][1] % multiple:
        raise ValueError(f"{kind} needs keyframes whose width and height are multiples of {multiple}; got "
                         f"{settings['size'][0]}x{settings['size'][1]}")
    if min_cfg > 0 and kind != "svd":
        raise ValueError(f"min_cfg (linear guidance over frames) is for SVD; set it to 0 for the {kind} backend")
    if kind == "svd":
        return kind, svd_backend(model, vae, clip_vision, fps=fps, min_cfg=min_cfg, **settings)
    if kind == "ltxv":
        return kind, ltxv_backend(model, vae, positive, negative, fps=fps, **settings)
    if kind == "wan22":
        return kind, wan22_backend(model, vae, positive, negative, **settings)
    return kind, wan_backend(model, vae, positive, negative, clip_vision=clip_vision, **settings)
