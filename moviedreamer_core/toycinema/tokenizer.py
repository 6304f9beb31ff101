"""The toy cinema's keyframe tokenizer: a 32x32 keyframe to two continuous visual tokens.

MovieDreamer compresses every keyframe into a handful of continuous tokens with a diffusion autoencoder
(paper section 3.2; two tokens keep the essential semantics). This is the encoder half: a small convolutional
net whose output the planner learns to predict and the renderer (the decoder half, a diffusion UNet that reads
the tokens through decoupled cross-attention) learns to draw. Encoder and decoder train together
(``toycinema/autoencoder.py``), so the tokens hold whatever the decoder needs that the identities do not give it.

Each token is layer-normalised without a learned scale (zero mean, unit variance over its ``D`` values): the
planner's Gaussian mixture head then predicts values of a fixed, known scale, and the tokens cannot grow to
dominate the decoder's attention. The token space is named after a fingerprint of the weights, so a renderer
or planner trained with one tokenizer refuses tokens from another (``spaces.require_token_space``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..spaces import TokenSpace
from ..text_files import loads_json_object

METADATA_KEY = "moviedreamer_toy_tokenizer"


@dataclass
class TokenizerConfig:
    K: int = 2  # tokens per keyframe
    D: int = 16  # values per token
    size: int = 32  # input resolution (other sizes are resized to it)
    width: int = 32  # channels of the first convolution (doubled twice)


class ToyTokenizer(nn.Module):
    """``[B, 3, S, S]`` images in -1..1 -> ``[B, K, D]`` tokens (each token normalised)."""

    def __init__(self, cfg: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),  # 16x16
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(),  # 8x8
            nn.Conv2d(4 * w, 4 * w, 4, stride=2, padding=1), nn.SiLU(),  # 4x4: keeps where things are
        )
        self.head = nn.Linear(4 * w * (cfg.size // 8) ** 2, cfg.K * cfg.D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.cfg.size or x.shape[-2] != self.cfg.size:
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", antialias=True, align_corners=False)
        tokens = self.head(self.net(x).flatten(1)).reshape(x.shape[0], self.cfg.K, self.cfg.D)
        return F.layer_norm(tokens, (self.cfg.D,))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    @property
    def space(self) -> TokenSpace:
        return TokenSpace(f"toycinema.tokenizer.{self.fingerprint()}", self.cfg.K, self.cfg.D)

    @torch.no_grad()
    def encode_images(self, images, batch_size: int = 256) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` (numpy, or a list of such images) -> ``[N, K, D]`` tokens."""
        arr = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [N, H, W, 3], got shape {tuple(arr.shape)}")
        was = self.training
        self.eval()
        out = [self(to_pixels(arr[i:i + batch_size])) for i in range(0, len(arr), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.cfg.K, self.cfg.D)

    def token_encoder(self):
        """This tokenizer as ``script_encoding.TokenEncoder`` (reference tokens, datasets)."""
        from ..script_encoding import TokenEncoder

        return TokenEncoder(encode=lambda images: self.encode_images(images), space=self.space)

    def save(self, path: str) -> None:
        from ..files import save_safetensors

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_safetensors(state, path, metadata={METADATA_KEY: json.dumps(asdict(self.cfg))})

    @classmethod
    def load(cls, path: str) -> "ToyTokenizer":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if METADATA_KEY not in meta:
                raise ValueError(f"{path} is not a toy cinema tokenizer file (no {METADATA_KEY} metadata)")
            model = cls(TokenizerConfig(**loads_json_object(meta[METADATA_KEY], f"{path}: its '{METADATA_KEY}' metadata")))
            model.load_state_dict({k: f.get_tensor(k) for k in f.keys()}, strict=True)
        return model.eval()


def to_pixels(images) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` -> float ``[N, 3, H, W]`` in -1..1 (the pixel-space diffusion model's range)."""
    x = torch.as_tensor(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)
    return x.permute(0, 3, 1, 2).contiguous()
