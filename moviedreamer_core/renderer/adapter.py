"""The identity decoder adapter: visual tokens and face identity into a diffusion UNet's cross-attention.

MovieDreamer decodes keyframe tokens with a text-to-image diffusion model that reads them through extra
cross-attention (paper section 3.2, the diffusion autoencoder's decoder), and fine-tunes it to also take the
characters' face embeddings so faces stay stable (section 3.4). We implement that as an adapter in the
IP-Adapter manner ("decoupled cross-attention"), so it sits on any SD1.5/SDXL model a user already has:

* ``TokenProjector``: the keyframe's K tokens (``[K, D]``) -> ``N`` context tokens of the UNet's context width;
* ``IdentityProjector``: a face identity (``[Di]``) -> ``M`` identity tokens (as FaceID-style adapters do,
  optionally reading the face crop's CLIP Vision features as FaceID plus does; see ``faceid.py``);
* per cross-attention layer a decoupled key/value pair (``to_k``, ``to_v``) applied to those context tokens;
* optionally (``identity_slots``) a learned embedding per place in the keyframe's character list, added to that
  character's identity tokens. Attention is blind to the order of its keys, so without it a keyframe's two or
  three identities reach every pixel alike and nothing says which figure wears which face: the toy cinema's
  two-character close-ups came out as one blended figure twice. With it, the renderer reads the list in the
  order it was trained on (the toy world lists on-screen characters left to right, as its scripts do); real
  renderers keep it off, because real scripts name characters in no particular order.
* optionally (``identity_empty_slots``, with slots) a learned "nobody in this place" token set per slot, filling
  the places after the last character. Attention normalises over its keys, so one character's tokens read the same
  whether the keyframe has one character or that one and a second: without the fillers nothing in the identity
  context says how many figures to draw, and the toy cinema drew ghost figures beside its close-ups' characters and
  a third figure in two-character wide shots. With them the context says "places 2 and 3 are empty", and pixels
  with no figure have keys of their own to attend to. A keyframe with nobody on screen gets only fillers ("every
  place is empty"), which tells it apart from the training's identity dropout (no identity path at all).
* optionally (``identity_positions``) the pixel's place in the image, as Fourier features of its normalised
  coordinates through a learned per-layer linear map, added to the identity attention's queries. The slots say
  "first, second, third from the left", but a UNet's queries barely know where they are (only what zero padding
  leaks through the convolutions), so the pixels of a two-character shot could not pick their own character's
  slot: the toy cinema drew both figures in the first character's colours. Zero-initialised, so it starts as the
  plain decoupled attention.
* optionally (``token_positions``) the same place term on the *token* attention's queries. A keyframe's tokens say
  where its figures stand ("one figure on the left"), but a query that does not know where it is cannot tell
  whether that is about itself: the toy cinema's decoder drew a wide shot's lone character at two or three places
  (a hedge between the places the tokens might mean, which the sampler then commits to), and classifier-free
  guidance amplified it. With the place on the queries a pixel reads "on the left" as about itself or not.
  Zero-initialised like ``identity_positions``.

Each patched layer computes ``attn(q, K_text, V_text) + w_tok * attn(q, K_tok, V_tok) + w_id * attn(q, K_id, V_id)``;
the text path is the UNet's own. The adapter declares the token and identity spaces it decodes; the render
node refuses a storyboard or script from another space before sampling.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

import torch
import torch.nn as nn

from ..spaces import EmbeddingSpace, TokenSpace
from ..state_shapes import require_matching_shapes
from ..text_files import loads_json_object
from .faceid import IdentityProjector

RENDERER_FORMAT_VERSION = 1
METADATA_KEY = "moviedreamer_renderer"


#: The most cross-attention layers a renderer may patch (SDXL has 70) and the widest of them.
MAX_LAYERS = 1024
MAX_WIDTH = 1 << 16
#: Whole-number fields of a renderer config and their ranges (``RendererConfig.from_dict``).
_WHOLE_NUMBERS = {"context_dim": (1, MAX_WIDTH), "context_tokens": (1, 1024), "identity_tokens": (1, 1024),
                  "identity_slots": (0, 1024), "identity_positions": (0, 1024), "token_positions": (0, 1024),
                  "version": (0, 1 << 20)}


@dataclass
class RendererConfig:
    token_space: dict  # TokenSpace.to_dict()
    context_dim: int  # width of the UNet's cross-attention context (768 for SD1.5, 2048 for SDXL)
    layer_dims: list  # inner width of each patched cross-attention layer, in adapter layer order
    context_tokens: int = 4  # N: context tokens made from a keyframe's K visual tokens
    identity_space: Optional[dict] = None  # EmbeddingSpace.to_dict(); None: no identity path
    identity_tokens: int = 4  # M: context tokens per face identity
    token_norm: bool = True  # LayerNorm on projected tokens (as IP-Adapter's image_proj)
    resampler: Optional[dict] = None  # Resampler arguments: a perceiver replaces the linear token projector
    token_path: bool = True  # False: identity only (IP-Adapter FaceID files); the storyboard's tokens are not read
    identity_projector: Optional[dict] = None  # faceid.IdentityProjector options (hidden, perceiver, shortcut...)
    identity_slots: int = 0  # >0: a learned embedding per place in the character list (see the module docstring)
    identity_empty_slots: bool = False  # with slots: learned "nobody here" tokens fill the places after the last character
    identity_positions: int = 0  # >0: Fourier frequencies of the pixel's place added to identity queries (see above)
    token_positions: int = 0  # >0: the same place term on the token attention's queries (see above)
    identity_places: bool = False  # slots are screen places, read from the tokens (see above)
    source: str = "moviedreamer"  # or "ipadapter" for converted public files
    version: int = RENDERER_FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def tokens(self) -> TokenSpace:
        return TokenSpace.from_dict(self.token_space)

    @classmethod
    def from_dict(cls, d) -> "RendererConfig":
        """The configuration a renderer file's metadata holds; ``ValueError`` naming the field when it is not one (a
        hand-edited or hostile file: a list, an unknown field, a negative width, 200000 layers)."""
        if not isinstance(d, dict):
            raise ValueError("its configuration is not a JSON object")
        version = d.get("version", RENDERER_FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > RENDERER_FORMAT_VERSION:
            raise ValueError(f"renderer format {version} is newer than this pack understands "
                             f"({RENDERER_FORMAT_VERSION}); update ComfyUI-MovieDreamer")  # before its new fields
        known = {f.name for f in fields(cls)}
        unknown = sorted((str(k)[:40] for k in d if k not in known))
        if unknown:
            raise ValueError(f"unknown renderer config fields: {unknown[:10]}")
        missing = [k for k in ("token_space", "context_dim", "layer_dims") if k not in d]
        if missing:
            raise ValueError(f"renderer config fields missing: {missing}")
        for name, (low, high) in _WHOLE_NUMBERS.items():
            value = d.get(name, low)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"renderer config {name} must be a whole number from {low} to {high:,}, "
                                 f"got {repr(value)[:100]}")
        dims = d["layer_dims"]
        if (not isinstance(dims, list) or len(dims) > MAX_LAYERS
                or any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_WIDTH for x in dims)):
            raise ValueError(f"renderer config layer_dims must be a list of at most {MAX_LAYERS} whole numbers from 1 to "
                             f"{MAX_WIDTH:,}" + (f", got a list of {len(dims):,}" if isinstance(dims, list) else ""))
        for name in ("token_norm", "token_path", "identity_empty_slots", "identity_places"):
            if not isinstance(d.get(name, False), bool):
                raise ValueError(f"renderer config {name} must be true or false, got {str(d[name])[:100]}")
        for name in ("resampler", "identity_projector", "extra"):
            if d.get(name) is not None and not isinstance(d[name], dict):
                raise ValueError(f"renderer config {name} must be an object, got {str(d[name])[:100]}")
        if not isinstance(d.get("source", ""), str):
            raise ValueError("renderer config source must be text")
        try:
            TokenSpace.from_dict(d["token_space"])
            if d.get("identity_space") is not None:
                EmbeddingSpace.from_dict(d["identity_space"])
        except ValueError as e:
            raise ValueError(f"renderer config: {e}") from None
        return cls(**d)

    @property
    def identity(self) -> Optional[EmbeddingSpace]:
        return EmbeddingSpace.from_dict(self.identity_space) if self.identity_space else None


class TokenProjector(nn.Module):
    """``[B, K, D]`` visual tokens -> ``[B, N, C]`` context tokens."""

    def __init__(self, K: int, D: int, N: int, C: int, norm: bool = True):
        super().__init__()
        self.N, self.C = N, C
        self.proj = nn.Linear(K * D, N * C)
        self.norm = nn.LayerNorm(C) if norm else nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens.flatten(1)).reshape(tokens.shape[0], self.N, self.C))


class KVPair(nn.Module):
    def __init__(self, C: int, inner: int):
        super().__init__()
        self.to_k = nn.Linear(C, inner, bias=False)
        self.to_v = nn.Linear(C, inner, bias=False)


class RendererAdapter(nn.Module):
    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.cfg = cfg
        ts = cfg.tokens
        if not cfg.token_path:
            self.token_proj = None
        elif cfg.resampler:
            from .resampler import Resampler

            self.token_proj = Resampler(**cfg.resampler)
        else:
            self.token_proj = TokenProjector(ts.K, ts.D, cfg.context_tokens, cfg.context_dim, cfg.token_norm)
        self.token_kv = nn.ModuleList([KVPair(cfg.context_dim, d) for d in cfg.layer_dims]) if cfg.token_path else None
        self.token_pos = None
        if cfg.token_positions:
            if not cfg.token_path:
                raise ValueError("token_positions needs the token path (token_path true)")
            self.token_pos = nn.ModuleList([nn.Linear(4 * cfg.token_positions, d, bias=False) for d in cfg.layer_dims])
            for lin in self.token_pos:
                nn.init.zeros_(lin.weight)
        if cfg.identity is not None:
            self.identity_proj = IdentityProjector(cfg.identity.dim, cfg.identity_tokens, cfg.context_dim,
                                                   **(cfg.identity_projector or {}))
            self.identity_kv = nn.ModuleList([KVPair(cfg.context_dim, d) for d in cfg.layer_dims])
            self.identity_slot = None
            if cfg.identity_slots:
                self.identity_slot = nn.Parameter(0.02 * torch.randn(cfg.identity_slots, cfg.identity_tokens, cfg.context_dim))
            self.identity_empty = None
            if cfg.identity_empty_slots:
                if not cfg.identity_slots:
                    raise ValueError("identity_empty_slots needs identity_slots (the places the fillers stand for)")
                self.identity_empty = nn.Parameter(0.02 * torch.randn(cfg.identity_slots, cfg.identity_tokens, cfg.context_dim))
            self.place_head = None
            if cfg.identity_places:
                if not (cfg.identity_slots and cfg.identity_empty_slots and cfg.token_path):
                    raise ValueError("identity_places needs identity_slots, identity_empty_slots and the token path")
                self.place_head = nn.Linear(ts.K * ts.D, cfg.identity_slots)
            self.identity_pos = None
            if cfg.identity_positions:
                self.identity_pos = nn.ModuleList([nn.Linear(4 * cfg.identity_positions, d, bias=False) for d in cfg.layer_dims])
                for lin in self.identity_pos:
                    nn.init.zeros_(lin.weight)
        else:
            self.identity_proj = None
            self.identity_kv = None
            self.identity_slot = self.identity_empty = self.identity_pos = self.place_head = None

    @property
    def n_layers(self) -> int:
        return len(self.cfg.layer_dims)

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return self.token_proj(tokens.to(p.device, p.dtype))

    @property
    def has_token_path(self) -> bool:
        return self.token_kv is not None

    @property
    def needs_face_states(self) -> bool:
        """Whether identities come with their face crops' CLIP Vision hidden states (FaceID plus)."""
        return self.identity_proj is not None and self.identity_proj.needs_face_states

    def project_identity(self, identity: torch.Tensor, face_states: Optional[torch.Tensor] = None) -> torch.Tensor:
        p = next(self.parameters())
        if face_states is not None:
            face_states = face_states.to(p.device, p.dtype)
        return self.identity_proj(identity.to(p.device, p.dtype), face_states)

    def place_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, slots]``: how likely each screen place is taken, read from the keyframes' tokens ``[B, K, D]``
        (``identity_places``)."""
        if self.place_head is None:
            raise ValueError("this renderer does not bind identities to places (identity_places is off)")
        p = self.place_head.weight
        return self.place_head(tokens.to(p.device, p.dtype).flatten(1))

    def choose_places(self, tokens: torch.Tensor, n: int) -> torch.Tensor:
        """``[B, n]`` long: the ``n`` most likely places of each keyframe, left to right (where its ``n`` characters,
        listed left to right, stand)."""
        if n == 0:
            return torch.zeros(tokens.shape[0], 0, dtype=torch.long)
        return self.place_logits(tokens).topk(n, dim=1).indices.sort(dim=1).values.cpu()

    def identity_context(self, identities: torch.Tensor, face_states: Optional[torch.Tensor] = None,
                         places: Optional[torch.Tensor] = None, tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, n * M, C]``: the identity context of ``B`` keyframes with ``n`` characters each (``identities``
        ``[B, n, Di]``; ``face_states`` ``[B * n, ...]``). The i-th character's ``M`` tokens get slot ``i``'s
        embedding when the renderer has ``identity_slots``; characters past the last slot get none. With
        ``identity_empty_slots`` the places after the ``n``-th are filled with their "nobody here" tokens, so the
        context is ``[B, max(n, slots) * M, C]``, ``n == 0`` included (then it holds only fillers); without it
        ``n == 0`` gives an empty context. A 2-D batch is refused: ``[B, Di]`` could be B keyframes of one character
        or one keyframe of B.

        With ``identity_places`` the slots are screen places: ``places`` ``[B, n]`` (ascending place ids, the
        characters' places; training passes the true ones) or else the places ``tokens`` ``[B, K, D]`` show
        (``choose_places``); with neither, the framing of a medium or close shot (one character at the centre, two
        at the sides, three everywhere). The context is ``[B, slots * M, C]``: place ``p`` holds its character's
        tokens plus slot ``p``'s embedding, or slot ``p``'s filler."""
        if identities.ndim != 3:
            raise ValueError(f"identities must be [keyframes, characters, dim], got shape {tuple(identities.shape)}")
        B, n, Di = identities.shape
        if n:
            ctx = self.project_identity(identities.reshape(B * n, Di), face_states)
            ctx = ctx.reshape(B, n, ctx.shape[-2], self.cfg.context_dim)
        else:
            p = next(self.parameters())
            ctx = torch.zeros(B, 0, self.cfg.identity_tokens, self.cfg.context_dim, device=p.device, dtype=p.dtype)
        if self.place_head is not None:
            return self._placed_context(ctx, places, tokens)
        if self.identity_slot is not None:
            k = min(n, self.identity_slot.shape[0])
            ctx = torch.cat([ctx[:, :k] + self.identity_slot[:k], ctx[:, k:]], dim=1)
            if self.identity_empty is not None and k < self.identity_empty.shape[0]:
                ctx = torch.cat([ctx, self.identity_empty[k:].to(ctx.dtype).expand(B, -1, -1, -1)], dim=1)
        return ctx.reshape(B, -1, self.cfg.context_dim)

    def _placed_context(self, ctx: torch.Tensor, places: Optional[torch.Tensor], tokens: Optional[torch.Tensor]) -> torch.Tensor:
        """``identity_places``: ``ctx`` ``[B, n, M, C]`` (characters left to right) put at their screen places."""
        B, n = ctx.shape[:2]
        slots = self.identity_slot.shape[0]
        if n > slots:
            raise ValueError(f"this renderer binds identities to {slots} places; a keyframe has {n} characters")
        if places is None:
            if tokens is not None:
                places = self.choose_places(tokens, n)
            else:
                places = torch.tensor(default_places(n, slots), dtype=torch.long).expand(B, n)
        places = torch.as_tensor(places, dtype=torch.long).reshape(B, n).to(ctx.device)
        out = self.identity_empty.to(ctx.dtype).expand(B, -1, -1, -1).clone()  # [B, slots, M, C]: nobody anywhere
        if n:
            rows = torch.arange(B, device=ctx.device)[:, None].expand(B, n)
            out[rows, places] = ctx + self.identity_slot[places]
        return out.reshape(B, -1, self.cfg.context_dim)

    @property
    def max_characters(self) -> Optional[int]:
        """The most characters one keyframe may show (``identity_places``: one per screen place), or ``None``: any
        number (slots by rank leave the characters past the last slot without a slot embedding)."""
        return int(self.identity_slot.shape[0]) if self.place_head is not None else None

    @property
    def has_empty_slots(self) -> bool:
        """Whether a keyframe with nobody on screen still gets an identity context (every place "empty")."""
        return self.identity_empty is not None

    def identity_query_offset(self, layer: int, h: int, w: int) -> Optional[torch.Tensor]:
        """``[h * w, inner]``: what ``identity_positions`` adds to layer ``layer``'s identity queries on an ``h x w``
        grid (row-major, as the host flattens it), or ``None`` without the option."""
        if self.identity_pos is None:
            return None
        lin = self.identity_pos[layer]
        return lin(place_features(h, w, self.cfg.identity_positions, lin.weight.device, lin.weight.dtype))

    def token_query_offset(self, layer: int, h: int, w: int) -> Optional[torch.Tensor]:
        """``[h * w, inner]``: what ``token_positions`` adds to layer ``layer``'s token queries (as
        ``identity_query_offset``), or ``None`` without the option."""
        if self.token_pos is None:
            return None
        lin = self.token_pos[layer]
        return lin(place_features(h, w, self.cfg.token_positions, lin.weight.device, lin.weight.dtype))

    def layer_kv(self, layer: int, context: torch.Tensor, identity: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        pair = (self.identity_kv if identity else self.token_kv)[layer]
        return pair.to_k(context), pair.to_v(context)


def default_places(n: int, slots: int = 3) -> list[int]:
    """Where ``n`` characters stand in a medium or close shot of ``slots`` places: one at the centre, the rest spread
    evenly from the sides (the toy cinema's framing)."""
    if n == 0:
        return []
    if n == 1:
        return [slots // 2]
    return sorted({round(i * (slots - 1) / (n - 1)) for i in range(n)})


def place_features(h: int, w: int, frequencies: int, device=None, dtype=None) -> torch.Tensor:
    """``[h * w, 4 * frequencies]``: sines and cosines of every grid cell's centre, coordinates normalised to
    -1..1 (so the same place reads the same at every resolution), at frequencies ``pi * 2**f``."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)  # [h*w, (y, x)]
    angles = grid[:, :, None] * (torch.pi * 2.0 ** torch.arange(frequencies, device=device, dtype=torch.float32))
    return torch.cat([angles.sin(), angles.cos()], -1).reshape(h * w, 4 * frequencies).to(dtype or torch.float32)


# --------------------------------------------------------------------------------------------- files


def save_renderer(adapter: RendererAdapter, path: str) -> None:
    from ..files import save_safetensors

    state = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    save_safetensors(state, path, metadata={METADATA_KEY: json.dumps(asdict(adapter.cfg), sort_keys=True)})


def read_renderer_config(path: str) -> Optional[RendererConfig]:
    """The config of a MovieDreamer renderer file, or ``None`` when the file is not one (e.g. an IP-Adapter)."""
    from ..planner.checkpoint import read_metadata

    meta = read_metadata(path, "renderer")
    if METADATA_KEY not in meta:
        return None
    try:
        return RendererConfig.from_dict(loads_json_object(meta[METADATA_KEY], f"its configuration ('{METADATA_KEY}' "
                                                                              "metadata)"))
    except ValueError as e:  # not JSON, nested too deeply, not an object: named by loads_json_object
        raise ValueError(f"renderer file {os.path.basename(path)}: {e}") from None


def load_renderer(path: str) -> RendererAdapter:
    """A MovieDreamer renderer file, or a public IP-Adapter file converted on the fly (see ``ipadapter.py``)."""
    from safetensors import safe_open

    cfg = read_renderer_config(path)
    if cfg is not None:
        require_matching_shapes(lambda: RendererAdapter(cfg), path)
    with safe_open(path, framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    if cfg is None:
        from .ipadapter import adapter_from_ipadapter

        name = os.path.basename(path)
        try:
            return adapter_from_ipadapter(state, name=name)
        except (KeyError, IndexError, ZeroDivisionError, RuntimeError) as e:  # a tensor missing or of another shape
            raise ValueError(f"{name}: an IP-Adapter layout this pack does not know, or a damaged file "
                             f"({type(e).__name__}: {str(e)[:200]})") from None
        except ValueError as e:
            raise ValueError(str(e) if name in str(e) else f"{name}: {str(e)[:300]}") from None
    adapter = RendererAdapter(cfg)
    adapter.load_state_dict(state, strict=True)
    return adapter.eval()
