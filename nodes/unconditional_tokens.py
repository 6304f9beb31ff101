"""What the unconditional pass of classifier-free guidance reads through the token path.

The render node patches the UNet so that conditional chunks read the keyframe's projected tokens and
unconditional chunks read the projection of *unconditional features* (``attention_patch``). Which features those
are is part of how an IP-Adapter was trained, so we follow the reference implementations:

* **Plain IP-Adapter** (pooled ``image_embeds``): zero features. tencent-ailab/IP-Adapter,
  ``ip_adapter/ip_adapter.py`` (commit 62e4af9), ``IPAdapter.get_image_embeds`` line 149:
  ``uncond_image_prompt_embeds = self.image_proj_model(torch.zeros_like(clip_image_embeds))``; and
  cubiq/ComfyUI_IPAdapter_plus, ``IPAdapterPlus.py`` (commit 9d076a3), lines 390-391, 405-406 and 1419-1420:
  ``img_uncond_embeds = torch.zeros_like(img_cond_embeds)``.
* **IP-Adapter plus** (CLIP Vision's ``penultimate_hidden_states`` through a resampler): the features of a *black
  image* encoded by the same CLIP Vision model. cubiq/ComfyUI_IPAdapter_plus ``IPAdapterPlus.py`` lines 380-383::

      if is_plus:
          img_cond_embeds = img_cond_embeds.penultimate_hidden_states
          image_negative = image_negative if image_negative is not None else torch.zeros([1, clipvision_size, clipvision_size, 3])
          img_uncond_embeds = encode_image_masked(clipvision, image_negative, ...).penultimate_hidden_states

  (the same at lines 403-404 for precomputed embeds, and in its IPAdapterEncoder at lines 1415-1417).
  tencent-ailab/IP-Adapter ``IPAdapterPlus.get_image_embeds`` (lines 303-314) and ``IPAdapterPlusXL`` (345-356)
  encode ``torch.zeros_like(clip_image)`` through the image encoder, zeros *after* the processor's normalisation
  (a mid-grey picture); we follow the ComfyUI reference (a black IMAGE through the host's CLIP Vision
  preprocessing), as ComfyUI users' IP-Adapter plus renders do.

The black image needs the CLIP Vision model, which the render node does not take: the node that encodes images
into tokens (Keyframe Encode) stores its encoding with the storyboard (``Storyboard.null_tokens``). A plus renderer
given a storyboard without it (one saved before this field existed) falls back to zero features, with a warning.
MovieDreamer's own renderers keep zero features: they are trained here without an unconditional pass, and their
token space may be any encoder's.
"""

from __future__ import annotations

import logging

import torch

#: Renderer sources whose unconditional features are a black image's (see the module docstring).
BLACK_IMAGE_SOURCES = ("ipadapter-plus",)


def black_image_tokens(clip_vision, token_source: str) -> torch.Tensor:
    """``[1, K, D]``: a black image (``[1, size, size, 3]`` zeros, size the model's input size, as the reference
    builds it) through ``clip_vision.encode_image``, as tokens of ``token_source`` (``image_embeds`` or
    ``penultimate_hidden_states``)."""
    size = int(getattr(clip_vision, "image_size", 224) or 224)
    with torch.no_grad():
        out = clip_vision.encode_image(torch.zeros(1, size, size, 3))
    tokens = out.image_embeds[:, None] if token_source == "image_embeds" else out.penultimate_hidden_states
    return tokens.float().cpu()


def unconditional_features(renderer_cfg, storyboard) -> torch.Tensor:
    """``[1, K, D]`` features whose projection the unconditional pass reads, for a renderer config and the
    storyboard it renders: a black image's for IP-Adapter plus files, zeros otherwise."""
    zeros = torch.zeros(1, *storyboard.tokens.shape[1:])
    if renderer_cfg.source not in BLACK_IMAGE_SOURCES:
        return zeros
    if storyboard.null_tokens is None:
        logging.warning("MovieDreamer: the storyboard carries no black-image tokens (encode the keyframes with Keyframe "
                        "Encode); IP-Adapter plus renders its unconditional pass from zero features instead")
        return zeros
    return storyboard.null_tokens.float()
