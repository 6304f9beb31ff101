"""A Gaussian-mixture output head for continuous visual tokens (GIVT-style, diagonal covariance).

MovieDreamer predicts continuous tokens, not codebook indices; following GIVT (Tschannen et al., 2023) each
token's distribution is a mixture of ``M`` diagonal Gaussians whose parameters come from the transformer's
hidden state (paper section 3.3). A mixture can express "the next shot shows Ava *or* Bo" where a single
Gaussian would predict a blurry average of both.

Everything here works on normalised token values (the model keeps the dataset's per-dimension mean and
standard deviation and converts at its boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Mixture:
    """Mixture parameters for a batch of token predictions: ``logits [..., M]``, ``mu``/``sigma [..., M, D]``."""

    logits: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor

    def mean(self) -> torch.Tensor:
        """The mixture's expected value ``sum_m pi_m mu_m``: ``[..., D]``."""
        return (self.logits.softmax(-1).unsqueeze(-1) * self.mu).sum(-2)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``x [..., D]`` per dimension (divided by D, so sizes compare): ``[...]``."""
        x = x.unsqueeze(-2)
        log_normal = -0.5 * (((x - self.mu) / self.sigma) ** 2) - self.sigma.log() - 0.5 * math.log(2 * math.pi)
        log_p = torch.logsumexp(self.logits.log_softmax(-1) + log_normal.sum(-1), dim=-1)
        return -log_p / x.shape[-1]

    def guided(self, uncond: "Mixture", scale: float) -> "Mixture":
        """Classifier-free guidance on the mixture (our choice; the paper does not spell it out).

        Component means and mixture logits are extrapolated away from the unconditional prediction,
        ``u + s (c - u)``; spreads stay conditional. At ``s = 1`` this is the conditional mixture exactly.
        """
        if scale == 1.0:
            return self
        return Mixture(
            logits=uncond.logits + scale * (self.logits - uncond.logits),
            mu=uncond.mu + scale * (self.mu - uncond.mu),
            sigma=self.sigma,
        )

    def sample(self, temperature: float, generator: torch.Generator) -> torch.Tensor:
        """Draw ``[..., D]``. Temperature scales the spreads and sharpens the component choice; at 0 the result
        is the mean of the most likely component (deterministic). Noise comes from ``generator`` on the CPU,
        so a seed gives the same tokens on any device."""
        if temperature <= 0:
            idx = self.logits.argmax(-1)
            return torch.gather(self.mu, -2, idx[..., None, None].expand(*idx.shape, 1, self.mu.shape[-1])).squeeze(-2)
        probs = (self.logits.float() / temperature).softmax(-1)
        flat = probs.reshape(-1, probs.shape[-1]).cpu()
        idx = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1]).to(self.mu.device)
        gather = idx[..., None, None].expand(*idx.shape, 1, self.mu.shape[-1])
        mu = torch.gather(self.mu, -2, gather).squeeze(-2)
        sigma = torch.gather(self.sigma, -2, gather).squeeze(-2)
        noise = torch.randn(mu.shape, generator=generator, dtype=torch.float32).to(mu.device, mu.dtype)
        return mu + math.sqrt(temperature) * sigma * noise


class MixtureHead(nn.Module):
    """Hidden state ``[..., H]`` to a ``Mixture`` over a ``D``-dimensional token."""

    def __init__(self, hidden: int, dim: int, components: int, min_sigma: float = 1e-3):
        super().__init__()
        self.dim, self.components, self.min_sigma = dim, components, min_sigma
        self.proj = nn.Linear(hidden, components * (1 + 2 * dim))

    def forward(self, h: torch.Tensor) -> Mixture:
        out = self.proj(h)
        m, d = self.components, self.dim
        logits = out[..., :m]
        mu, raw_sigma = out[..., m:].reshape(*out.shape[:-1], m, 2 * d).split(d, dim=-1)
        return Mixture(logits=logits, mu=mu, sigma=F.softplus(raw_sigma) + self.min_sigma)


def mixture_loss(mix: Mixture, target: torch.Tensor, nll_weight: float, l2_weight: float, cosine_weight: float,
                 weight: torch.Tensor | None = None) -> dict:
    """The planner's loss on predicted tokens: mixture NLL plus auxiliary L2 and cosine terms on the mixture
    mean (paper section 3.3: GMM negative log-likelihood with auxiliary L2-type losses; the exact mix is ours).

    ``weight [...]`` (0/1) excludes padded positions. Returns the total and each term (detached) for logs.
    """
    if weight is None:
        weight = torch.ones(target.shape[:-1], device=target.device)
    n = weight.sum().clamp_min(1.0)
    nll = (mix.nll(target) * weight).sum() / n
    mean = mix.mean()
    l2 = (((mean - target) ** 2).mean(-1) * weight).sum() / n
    cos = ((1 - F.cosine_similarity(mean, target, dim=-1, eps=1e-6)) * weight).sum() / n
    total = nll_weight * nll + l2_weight * l2 + cosine_weight * cos
    return {"loss": total, "nll": nll.detach(), "l2": l2.detach(), "cosine": cos.detach()}
