"""Training the renderer adapter on a frozen diffusion UNet (MovieDreamer sections 3.2 and 3.4).

The decoder learns to reconstruct a keyframe from its visual tokens (the diffusion autoencoder's decoder)
and, with the characters' face identities, to keep faces right where the tokens are vague. Only the adapter
trains; the UNet, its noise schedule and the VAE are the user's (the host's) and stay frozen, so this module
receives the UNet as a callable:

    ``denoise(noisy_latents, sigma, token_context, identity_context, text_context[, pooled=]) -> predicted clean latents``

(``nodes/renderer_training.py`` builds it from a host MODEL with the adapter patched in). The step follows the
paper's anti-overfitting recipe: image augmentation (kornia: flips, small crops, colour jitter, applied to the
images *before* they are encoded into tokens and latents) and face-embedding randomisation (a different photo
of the character, or the embedding plus noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .adapter import RendererAdapter

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass
class RendererBatch:
    latents: torch.Tensor  # [B, C, h, w] clean latents in the scale the UNet denoises (for a host model: the VAE's
    # latents through its ``process_latent_in``, as the sampler scales a LATENT)
    tokens: torch.Tensor  # [B, K, D] the keyframes' visual tokens
    text_context: torch.Tensor  # [B, L, C_ctx] the keyframes' text conditioning
    identities: Optional[torch.Tensor] = None  # [B, Di] face identity of the character on screen, [B, n, Di] of the
    # n characters on screen (n identity contexts per row, concatenated as the render node does), or None
    pixel_weights: Optional[torch.Tensor] = None  # [B, 1, h, w] weight of each latent pixel in the loss (the toy
    # cinema weights its small figures up), or None: every pixel 1
    pooled: Optional[torch.Tensor] = None  # [B, P] the text encoder's pooled output (SDXL reads it through its
    # ADM input), or None; handed to the denoiser as ``pooled=`` only when present
    places: Optional[torch.Tensor] = None  # [B, n] the characters' true screen places (left to right), for a renderer
    # with ``identity_places`` (else None: its place head reads them from the tokens)
    place_targets: Optional[torch.Tensor] = None  # [B, slots] 1 where a figure stands: the place head's training target

    def to(self, device) -> "RendererBatch":
        return RendererBatch(self.latents.to(device), self.tokens.to(device), self.text_context.to(device),
                             self.identities.to(device) if self.identities is not None else None,
                             self.pixel_weights.to(device) if self.pixel_weights is not None else None,
                             self.pooled.to(device) if self.pooled is not None else None, self.places,
                             self.place_targets.to(device) if self.place_targets is not None else None)


def augment_images(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Kornia augmentations on ComfyUI images ``[B, H, W, 3]`` in 0..1: horizontal flip, a mild random resized
    crop and colour jitter. Applied before encoding, so tokens and latents see the same augmented image.

    Kornia draws its parameters from torch's global generator; with ``generator`` given, that draw happens in a
    fork of the global generator seeded from ``generator``, so the result follows ``generator`` and the global
    state is left as it was (a node must not reseed the process's generator under other nodes)."""
    import kornia.augmentation as K

    x = images.movedim(-1, 1)
    aug = torch.nn.Sequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomResizedCrop(size=tuple(x.shape[-2:]), scale=(0.85, 1.0), ratio=(0.9, 1.1), p=0.5),
        K.ColorJitter(0.1, 0.1, 0.1, 0.02, p=0.5),
    )
    if generator is None:
        return aug(x).clamp(0, 1).movedim(1, -1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
        return aug(x).clamp(0, 1).movedim(1, -1)


def randomise_identity(identities: torch.Tensor, noise: float, generator: Optional[torch.Generator] = None,
                       banks: Optional[list] = None) -> torch.Tensor:
    """Face-embedding randomisation: per row, another photo of the same character when ``banks`` (one
    ``[n, Di]`` tensor per row) is given, then Gaussian noise, re-normalised."""
    out = identities.clone().float()
    if banks is not None:
        for i, bank in enumerate(banks):
            if bank is not None and bank.shape[0]:
                out[i] = bank[torch.randint(bank.shape[0], (), generator=generator)]
    out = out + noise * torch.randn(out.shape, generator=generator).to(out.device)
    absent = identities.abs().sum(-1) == 0  # "nobody on screen" rows stay zero
    return F.normalize(out, dim=-1).masked_fill(absent[..., None], 0.0)


def sample_sigmas(batch: int, sigma_min: float, sigma_max: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Log-uniform noise levels between the model's smallest and largest sigma."""
    u = torch.rand(batch, generator=generator)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def sample_sigmas_log_normal(batch: int, sigma_min: float, sigma_max: float, p_mean: float = -1.2, p_std: float = 1.2,
                             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Noise levels with ``log(sigma) ~ N(p_mean, p_std)``, clamped to the model's range (Karras et al. 2022,
    "EDM", section 5; their defaults are -1.2 and 1.2). For a UNet trained from scratch this spends the samples
    where the loss can still fall: log-uniform levels over 0.03..14.6 put about 43% of them above sigma 1,
    where pixels are mostly noise and the target is close to the mean image; EDM's defaults put 16% there and
    most around sigma 0.3, where small figures and exact colours are decided (the toy cinema's choice is in
    ``toycinema/autoencoder.py``)."""
    z = torch.randn(batch, generator=generator)
    return torch.exp(p_mean + p_std * z).clamp(sigma_min, sigma_max)


#: Spread of the training images for the ``"edm"`` loss weighting (pixels in -1..1 have a standard deviation near 0.5).
SIGMA_DATA = 0.5


def predict_clean(adapter: RendererAdapter, batch: RendererBatch, denoise: Denoiser, sigmas: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
    """The denoiser's prediction of the clean latents from ``latents + sigma * noise`` (what the sampler's first
    step sees when it adds ``noise`` at ``sigma`` to those latents), with the batch's tokens and identities
    through the adapter: the prediction that ``renderer_loss`` scores."""
    if not adapter.has_token_path or adapter.needs_face_states:
        raise ValueError(f"training is for MovieDreamer renderers; {adapter.cfg.source} adapters (identity only, or "
                         "reading face crops) are loaded, not trained here")
    token_ctx = adapter.project_tokens(batch.tokens)
    id_ctx = None
    if batch.identities is not None and adapter.identity_proj is not None:
        ids = batch.identities
        id_ctx = adapter.identity_context(ids[:, None] if ids.ndim == 2 else ids, places=batch.places,
                                          tokens=batch.tokens)  # [B, Di]: one character per row
    noisy = batch.latents + sigmas.view(-1, 1, 1, 1) * noise
    if batch.pooled is not None:
        return denoise(noisy, sigmas, token_ctx, id_ctx, batch.text_context, pooled=batch.pooled)
    return denoise(noisy, sigmas, token_ctx, id_ctx, batch.text_context)


def renderer_loss(adapter: RendererAdapter, batch: RendererBatch, denoise: Denoiser, sigmas: torch.Tensor,
                  noise: torch.Tensor, weighting: str = "x0") -> torch.Tensor:
    """Mean squared error between the clean latents and the UNet's prediction from ``latents + sigma*noise``.

    ``weighting="x0"``: the plain error of the predicted clean latents (the adapter on a trained UNet).
    ``"edm"``: each sample weighted by ``(sigma^2 + sd^2) / (sigma * sd)^2`` (Karras et al. 2022), which gives
    every noise level about the same say; a UNet trained from scratch needs it, or its low-noise predictions
    stay poor and samples keep residual noise (the toy cinema)."""
    if weighting not in ("x0", "edm"):
        raise ValueError(f"unknown loss weighting {weighting!r} (x0 or edm)")
    predicted = predict_clean(adapter, batch, denoise, sigmas, noise)
    error = (predicted.float() - batch.latents.float()).pow(2)
    if batch.pixel_weights is not None:
        error = error * batch.pixel_weights.float()
    per_sample = error.flatten(1).mean(1)
    if weighting == "x0":
        return per_sample.mean()
    s2 = sigmas.float().pow(2)
    return (per_sample * (s2 + SIGMA_DATA**2) / (s2 * SIGMA_DATA**2)).mean()


def train_step(adapter: RendererAdapter, batch: RendererBatch, denoise: Denoiser, optimizer: torch.optim.Optimizer, *,
               sigma_range: tuple[float, float], identity_noise: float = 0.05, identity_banks: Optional[list] = None,
               generator: Optional[torch.Generator] = None, grad_clip: float = 1.0) -> dict:
    """One optimisation step of the adapter (the UNet stays frozen). Returns ``{"loss": float}``."""
    adapter.train()
    if batch.identities is not None and (identity_noise > 0 or identity_banks is not None):
        batch = replace(batch, identities=randomise_identity(batch.identities, identity_noise, generator, identity_banks))
    sigmas = sample_sigmas(batch.latents.shape[0], *sigma_range, generator=generator).to(batch.latents.device)
    noise = torch.randn(batch.latents.shape, generator=generator).to(batch.latents.device)
    optimizer.zero_grad(set_to_none=True)
    loss = renderer_loss(adapter, batch, denoise, sigmas, noise)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), grad_clip)
    optimizer.step()
    return {"loss": float(loss.detach())}
