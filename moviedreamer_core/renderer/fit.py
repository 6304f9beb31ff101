"""Fitting a renderer adapter to a set of pre-encoded keyframes: the loop behind the training node and script.

Each sample is one keyframe as the renderer sees it at render time: its clean latents (the user's VAE, in the
scale the UNet denoises), its visual tokens (the token encoder), its text condition (the user's text encoder: the
cross-attention context and the pooled output that SDXL reads) and, when a face was found,
the identity of the character on screen with that character's bank of embeddings (paper section 3.4: the
decoder learns to read face identities; randomising them over the bank and with noise keeps it from
overfitting a single photo). Augmented variants of an image are separate samples, encoded once up front
(``renderer.train.augment_images``), so a step costs one UNet forward and backward, not a VAE pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..training_state import SaveSchedule
from . import fit_state
from .adapter import RendererAdapter
from .train import Denoiser, RendererBatch, renderer_loss, train_step

#: The fixed evaluation uses at most this many samples, each at ``EVAL_SIGMAS`` noise levels.
EVAL_SAMPLES = 16
EVAL_SIGMAS = 4


@dataclass
class RendererSample:
    latents: torch.Tensor  # [C, h, w]
    tokens: torch.Tensor  # [K, D]
    text: torch.Tensor  # [L, C_ctx]
    identity: Optional[torch.Tensor] = None  # [Di], L2-normalised; None: nobody recognisable on screen
    bank: Optional[torch.Tensor] = None  # [n, Di] the character's embeddings from its *other* photos: the identity
    # a training step reads is drawn from these (face-embedding randomisation); None: the sample's own identity
    pooled: Optional[torch.Tensor] = None  # [P] the text encoder's pooled output (SDXL's ADM input reads it)


def _stack_text(texts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Texts of different lengths (CLIP's 77-token chunks) padded by repeating each one's last token, as
    CLIP itself pads inside a chunk."""
    length = max(t.shape[0] for t in texts)
    return torch.stack([torch.cat([t, t[-1:].expand(length - t.shape[0], -1)]) if t.shape[0] < length else t for t in texts])


def collate(samples: Sequence[RendererSample], identity_dim: Optional[int]) -> tuple[RendererBatch, Optional[list]]:
    """A batch; rows without an identity get a zero identity (and no bank) when the adapter reads identities."""
    identities, banks = None, None
    if identity_dim is not None and any(s.identity is not None for s in samples):
        identities = torch.stack([s.identity if s.identity is not None else torch.zeros(identity_dim) for s in samples])
        banks = [s.bank if s.identity is not None else None for s in samples]
    pooled = None
    if any(s.pooled is not None for s in samples):
        if not all(s.pooled is not None for s in samples):
            raise ValueError("some samples have a pooled text output and some have none")
        pooled = torch.stack([s.pooled for s in samples])
    batch = RendererBatch(latents=torch.stack([s.latents for s in samples]), tokens=torch.stack([s.tokens for s in samples]),
                          text_context=_stack_text([s.text for s in samples]), identities=identities, pooled=pooled)
    return batch, banks


@dataclass
class FitResult:
    losses: list  # the training loss of every step (noisy: each step draws its own noise levels)
    eval_before: float  # the fixed evaluation loss before training
    eval_after: float  # ... and after
    resumed_from: int = 0  # the step an interrupted run of the same training had saved (0: started afresh)


def evaluation_loss(adapter: RendererAdapter, samples: Sequence[RendererSample], denoise: Denoiser,
                    sigma_range: tuple[float, float], device=None, seed: int = 0) -> float:
    """Denoising loss on the first ``EVAL_SAMPLES`` samples at fixed noise levels (a geometric grid over the
    middle of ``sigma_range``) and fixed noise: comparable before and after training, unlike the step losses."""
    import math

    rows = list(samples[:EVAL_SAMPLES])
    identity_dim = adapter.cfg.identity.dim if adapter.cfg.identity is not None else None
    lo, hi = math.log(sigma_range[0]), math.log(sigma_range[1])
    sigmas = [math.exp(lo + (hi - lo) * (i + 1) / (EVAL_SIGMAS + 1)) for i in range(EVAL_SIGMAS)]
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    was_training = adapter.training
    adapter.eval()
    with torch.no_grad():
        batch, _ = collate(rows, identity_dim)
        device = device or next(adapter.parameters()).device
        batch = batch.to(device)
        for sigma in sigmas:
            noise = torch.randn(batch.latents.shape, generator=generator).to(device)
            total += float(renderer_loss(adapter, batch, denoise, torch.full((len(rows),), sigma, device=device), noise))
    adapter.train(was_training)
    return total / len(sigmas)


def fit_renderer(adapter: RendererAdapter, samples: Sequence[RendererSample], denoise: Denoiser, *, steps: int,
                 batch_size: int = 4, learning_rate: float = 1e-4, sigma_range: tuple[float, float] = (0.03, 14.6),
                 identity_noise: float = 0.05, seed: int = 0, device: Optional[torch.device] = None,
                 progress: Optional[Callable[[int, int, float], None]] = None, resume: Optional[str] = None,
                 settings: Optional[dict] = None, save_every: Optional[float] = None,
                 fingerprint_samples: bool = True) -> FitResult:
    """Train ``adapter`` in place for ``steps`` steps on random batches of ``samples``.

    ``progress(step, steps, loss)`` is called after every step (it may raise to stop: the host's interrupt).
    ``resume``: a file for the training state (``fit_state``): written every ``save_every`` seconds (default:
    ``training_state.SAVE_EVERY_SECONDS``, longer when saving is slow) and when ``progress`` raises, and continued from when it holds this training's
    state (the samples, the adapter's starting weights, the settings here and ``settings``, e.g. the frozen
    model's fingerprint; ``fingerprint_samples=False`` when ``settings`` identifies the samples by the inputs they
    were encoded from). The caller removes it after saving the renderer (``fit_state.clear_fit_state``)."""
    if not samples:
        raise ValueError("no training samples")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1 (got {steps}, {batch_size})")
    identity_dim = adapter.cfg.identity.dim if adapter.cfg.identity is not None else None
    for s in samples:
        if identity_dim is not None and s.identity is not None and s.identity.shape[-1] != identity_dim:
            raise ValueError(f"a sample's identity has {s.identity.shape[-1]} values; the adapter reads {identity_dim}")
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(int(seed))
    device = device or next(adapter.parameters()).device
    start, losses, before, fingerprint = 0, [], None, ""
    if resume is not None:
        fingerprint = fit_state.training_fingerprint(samples if fingerprint_samples else None, adapter, {
            "batch_size": batch_size, "learning_rate": learning_rate, "sigma_range": list(sigma_range),
            "identity_noise": identity_noise, "seed": int(seed), **(settings or {})})
        restored = fit_state.load_fit_state(resume, fingerprint=fingerprint, max_step=steps, adapter=adapter,
                                            optimizer=optimizer, generator=generator)
        if restored is not None:
            start, losses, before = restored["step"], restored["losses"], restored["eval_before"]
    if before is None:
        before = evaluation_loss(adapter, samples, denoise, sigma_range, device)

    def save(done: int) -> None:
        fit_state.save_fit_state(resume, fingerprint=fingerprint, step=done, losses=losses, eval_before=before,
                                 adapter=adapter, optimizer=optimizer, generator=generator)

    schedule = SaveSchedule(save, save_every)
    for step in range(start, steps):
        rows = torch.randint(len(samples), (min(batch_size, len(samples)),), generator=generator).tolist()
        batch, banks = collate([samples[i] for i in rows], identity_dim)
        batch = batch.to(device)
        if banks is not None:
            banks = [b.to(device) if b is not None else None for b in banks]
        stats = train_step(adapter, batch, denoise, optimizer, sigma_range=sigma_range, identity_noise=identity_noise,
                           identity_banks=banks, generator=generator)
        losses.append(stats["loss"])
        if resume is not None:
            schedule.after_step(step + 1)
        if progress is not None:
            try:
                progress(step + 1, steps, stats["loss"])
            except BaseException:  # a Cancel (the host raises from the progress hook): keep the steps done
                if resume is not None:
                    schedule.save_now(step + 1)
                raise
    adapter.eval()
    return FitResult(losses, before, evaluation_loss(adapter, samples, denoise, sigma_range, device), resumed_from=start)
