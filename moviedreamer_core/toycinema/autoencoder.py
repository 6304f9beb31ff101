"""Training the toy cinema's diffusion autoencoder: tokenizer, decoder UNet and identity renderer together.

MovieDreamer's keyframe tokenizer is a diffusion autoencoder (paper section 3.2): an encoder squeezes a
keyframe into two tokens and a diffusion model, reading the tokens through extra cross-attention, draws the
keyframe back. Its identity-preserving renderer (section 3.4) also reads the on-screen characters' face
identities, so it repairs what two tokens lose (small figures, exact colours). Real users start from a trained
SD model and train only the adapter (``renderer/fit.py``); the toy world has no trained base, so here the
base UNet trains from scratch together with the tokenizer and the adapter, with the same loss
(``renderer.train.renderer_loss``: the host UNet predicts the clean keyframe from a noisy one).

What stays the host's: the UNet class, its noise schedule and the way the adapter is patched into it; they
arrive as ``denoise`` (see ``renderer/train.py``), built in ``nodes/toycinema_models.py``. This module never
imports the host.

Batches hold keyframes with the same number of characters on screen, so every row's identity context has the
same length, exactly as at render time (``n`` identities -> ``n * M`` identity tokens), listed left to right as
the toy scripts list them (the renderer's ``identity_slots`` bind each to its place). Training-only
regularisers, as in the paper: identity randomisation (noise on the reference identity), a horizontal flip
(which reverses the list), and condition dropout (zero tokens and no identity, the render node's unconditional
pass), which also makes classifier-free guidance meaningful at render time.

Noise levels are drawn log-normally (``log sigma ~ N(-0.6, 1.4)``, clamped to the schedule's range), not
log-uniformly over 0.03..14.6, which spends 43% of the samples above sigma 1 where a keyframe is mostly noise.
Measured on 4 held-out films decoded from their true tokens, same 16-minute budget: log-uniform levels (and the
earlier, larger UNet) gave an exact character set in 0.26 of keyframes; EDM's own distribution (-1.2, 1.2; 16%
above sigma 1) 0.40 but fewer keyframes with the right camera size and figures in the right places (camera 0.90,
positions 0.43), which are decided at high noise; this one (33% above sigma 1) 0.49, camera 1.00, positions 0.56.

The figures weigh more in the loss (``figure_weight``): the pixels of their bounding boxes (known exactly from
the keyframe plan, ``render.figure_boxes``) count ``1 + figure_weight`` times, the rest once. A wide shot's figure
is a few pixels of a 1024-pixel keyframe, so a plain pixel loss barely notices a missing or mis-coloured one;
that, not the identity conditioning, is what kept the characters smeared. Same 2200 steps, same 4 films: exact
set 0.51 -> 0.70, character F1 0.74 -> 0.87, identity consistency 0.57 -> 0.70, at a price: location 0.87 -> 0.89
(no loss), camera 0.99 -> 0.96, positions 0.55 -> 0.46 and more figures drawn than the plan has (a weighted
loss's best guess under doubt leans towards drawing a figure). Weight 4 with every row's weights rescaled to mean
1 (which starves a close-up's background) gave set 0.69 but location 0.82.

The decoder, trained from scratch, is the bottleneck, and training steps are the lever that has held up best (the
shipped run takes 4400). On 16 held-out films (321 keyframes) decoded from their true tokens: 2200 steps gave an
exact set of 0.67, location 0.93, positions 0.43; 3300 steps 0.75, 0.98, 0.48; 4400 steps 0.77 (0.72 with another
sampling seed), location 1.00, camera 0.99, positions 0.54. Characters gain little after 3300 steps; places, camera
sizes and positions keep improving. A learning rate of 2e-3 instead of 1e-3 was worse (0.62-0.66 against 0.70-0.74
on 4 films, 2200 steps); bfloat16 autocast made a step 20% faster but the loss stalled.

What 4400 steps still got wrong was the cast's count and who stands where, and two renderer options fixed most of
it (``RendererConfig``, see ``renderer/adapter.py``). Same 16 films, true tokens, two sampling seeds each:

* the recipe above (identity slots only): exact set 0.77 / 0.72, positions 0.54, identity consistency 0.66; wrong
  sets mostly *extra* figures (46 / 53 keyframes), because attention normalises over the identity tokens and one
  character reads the same as that character beside another;
* plus ``identity_empty_slots`` ("nobody here" fillers after the last character): 0.79 / 0.78, extra figures down
  to 27 / 28 keyframes; now mostly two-character shots drawn in the first character's colours;
* plus the fillers for empty shots (every place "nobody", so an empty shot is not the identity dropout) and
  ``identity_positions`` (the pixel's place on the identity queries, so a pixel can pick its own slot): exact set
  0.85 / 0.84, positions 0.71, identity consistency 0.80, character F1 0.94. The shipped recipe. The two changes
  were trained together, so their shares are not separated.

Issue #21's world adds what a film's script says once (``grammar.py``): each place's light and each character's hat.
The light is the whole background and the tokens carry it without help (read back from true tokens: 0.99). A hat is a
few pixels, and the first decoder trained on this world drew the right hat in only 0.40 of medium shots from true
tokens (chance 0.33; the tokens' own readout 0.68), so hats are drawn larger (``render.py``) and their boxes weigh
``hat_weight`` more again in the loss.

The count of figures (issue #21): decoded from true tokens, 0.59 of wide keyframes showed extra figures, mostly a
scripted character drawn at a second place, with rank slots (above). The renderer's slots are now screen places read
from the tokens (``RendererConfig.identity_places``, the place head trained here on the keyframes' true places,
``place_weight``), with the pixel's place on the token queries too (``token_positions``): on the 16 development films
of the new world, from true tokens, exact cast 0.99 and extra figures on wide keyframes 0.00 for the first decoder of
that world (before the larger, weighted hats); the README has the shipped decoder's figures.

The tuning phase (``train_tokenizer=False``, ``place_weights``, ``ema_warm_start=False``; ``cli/toycinema_train.py``'s
``decoder_tune``). Decoded from true tokens, the 6600-step decoder put 52 of the 16 development films' 82 city
squares at night at another place (the other five places: 13 of 332). The tokens carry the city (a linear readout
fitted on training films reads every one), but in token space its grey bricks lie next to the green places (distance
between place centroids: city to forest 2.0-2.9, to the meadow 2.1-2.8, to the other three 2.7-5.9, per camera size),
the UNet's prediction of a city ground leans green at every noise level (green +9 to +16 of 255 from sigma 2 to 14.6
on the true noisy keyframe), and sampling carries the lean to a green-teal ground (seven sampler and schedule pairs,
euler to heun and DPM++ 2M: city 0.21-0.40 by the probe). More steps of the UNet and the renderer, with the tokenizer
frozen (the tokens, and so a planner trained on them, stay valid), a learning rate of 3e-4 (the main phase: 1e-3) and the
city's background weighted, draw more of them grey. Same 16 films, true tokens, probe place / city squares / background
match / exact cast:

* the 6600-step decoder: 0.85 / 0.37 / 0.949 / 0.99;
* 1000 steps more, the city's background weighted 4 / 8 / 16: 0.91 / 0.68, 0.92 / 0.76, 0.92 / 0.79 (background
  match 0.954-0.959, exact cast 0.98); every background 2 and the city 8: 0.91 / 0.71; city keyframes drawn four
  times as often, weighted 8 / not weighted: 0.92 / 0.83, 0.91 / 0.70; learning rate 6e-4 or 1e-3 instead of 3e-4:
  0.92 / 0.77, 0.91 / 0.73;
* 2000 steps more, the city weighted 8 (the shipped recipe): 0.95 / 0.87 / 0.969 / 0.98, unscripted state 0.97.

Steps are the lever, not the weight or the sampling; 2000 of them cost about 6 minutes of the 40-minute retraining.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..fingerprint import module_digest, tensor_digest
from ..renderer.adapter import RendererAdapter
from ..renderer.train import Denoiser, RendererBatch, randomise_identity, renderer_loss, sample_sigmas, sample_sigmas_log_normal
from ..training_state import SaveSchedule, load_state, save_state
from .film import Film, KeyframePlan
from .grammar import PAN
from .render import figure_boxes, render_keyframe
from .tokenizer import ToyTokenizer, to_pixels
from .world import CAMERAS, N_LOCATIONS, N_PLACE_LOOKS, N_POSITIONS


@dataclass
class KeyframeSet:
    """Ground-truth keyframes of many films: pixels, labels and who is on screen (ids, in the script's order)."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: list  # N FrameLabel
    characters: list  # N tuples of character ids
    figures: np.ndarray  # bool [N, S, S]: the figures' bounding boxes (render.figure_boxes)
    hats: Optional[np.ndarray] = None  # bool [N, S, S]: their hats' boxes (render.figure_boxes(part="hat"))

    def __len__(self) -> int:
        return len(self.labels)

    def by_count(self) -> dict[int, np.ndarray]:
        """Row indices grouped by the number of characters on screen."""
        groups: dict[int, list] = {}
        for i, chars in enumerate(self.characters):
            groups.setdefault(len(chars), []).append(i)
        return {n: np.asarray(rows) for n, rows in sorted(groups.items())}


def keyframe_set(films: Sequence[Film], size: int = 32) -> KeyframeSet:
    images, labels, characters, figures, hats = [], [], [], [], []
    for film in films:
        images.append(film.images(size))
        for plan in film.keyframes:
            labels.append(plan.label)
            characters.append(tuple(c for c, _, _ in plan.figures))
            figures.append(figure_boxes(plan, size))
            hats.append(figure_boxes(plan, size, part="hat"))
    return KeyframeSet(np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8), labels, characters,
                       np.stack(figures) if figures else np.zeros((0, size, size), bool),
                       np.stack(hats) if hats else np.zeros((0, size, size), bool))


def empty_closer_keyframes(n: int, seed: int, size: int = 32) -> KeyframeSet:
    """``n`` keyframes of an empty place framed medium or close-up (every place and light alike, a pan as the grammar
    draws them): the decoder's tuning phase adds them to its films' keyframes. Films show a place empty in a closer
    shot rarely (1.6% of the tuning films' keyframes even with the closer openings and the place shown empty after the
    cast leaves), and every other keyframe without a figure is wide, so the decoder drew "nobody" as a wide shot
    whatever the tokens' camera (``background_match.empty_framing``)."""
    rng = np.random.default_rng([int(seed), 7])
    cameras = [i for i, c in enumerate(CAMERAS) if c.name != "wide"]
    plans = []
    for _ in range(int(n)):
        camera = int(rng.choice(cameras))
        plans.append(KeyframePlan(int(rng.integers(N_LOCATIONS)), camera, (),
                                  round(float(rng.uniform(-PAN, PAN)) * CAMERAS[camera].width, 5),
                                  int(rng.integers(N_PLACE_LOOKS))))
    images = np.stack([render_keyframe(p, size) for p in plans]) if plans else np.zeros((0, size, size, 3), np.uint8)
    return KeyframeSet(images, [p.label for p in plans], [() for _ in plans], np.zeros((len(plans), size, size), bool),
                       np.zeros((len(plans), size, size), bool))


def joined(a: KeyframeSet, b: KeyframeSet) -> KeyframeSet:
    """The keyframes of ``a`` then those of ``b``."""
    hats = None if a.hats is None or b.hats is None else np.concatenate([a.hats, b.hats])
    return KeyframeSet(np.concatenate([a.images, b.images]), a.labels + b.labels, a.characters + b.characters,
                       np.concatenate([a.figures, b.figures]), hats)


@dataclass
class AutoencoderTraining:
    steps: int = 2000
    batch_size: int = 16  # at a fixed time budget, more and smaller steps train the from-scratch UNet further
    lr: float = 1e-3
    warmup_steps: int = 100
    sigma_range: tuple = (0.03, 14.6)  # the host's SD schedule; pixels in -1..1
    sigma_sampling: str = "log_normal"  # or "log_uniform" over sigma_range (see renderer.train)
    p_mean: float = -0.6  # log-normal noise levels, higher and wider than EDM's (-1.2, 1.2): see the docstring
    p_std: float = 1.4
    identity_noise: float = 0.05  # identity randomisation (paper section 3.3)
    uncond_prob: float = 0.1  # zero tokens and no identity: the unconditional pass of classifier-free guidance
    no_identity_prob: float = 0.1  # tokens only: the renderer also works with identity_weight 0
    flip: bool = True
    figure_weight: float = 2.0  # the figures' boxes weigh 1 + figure_weight in the loss, the rest 1 (see the docstring)
    hat_weight: float = 4.0  # the hats' boxes weigh this much more again: a film's hat is a few pixels (see the docstring)
    place_weight: float = 0.1  # the renderer's place head (identity_places): binary cross-entropy of the places taken
    weighting: str = "edm"  # renderer_loss weighting: every noise level counts (the UNet starts from scratch)
    ema: float = 0.999  # the saved weights are an exponential moving average (0: the raw weights)
    ema_warm_start: bool = True  # early averages follow the raw weights (from scratch); False: averaged from step 0
    place_weights: tuple = ()  # per location (world.LOCATIONS order): its keyframes' background pixels weigh this
    train_tokenizer: bool = True  # False: the tokens stay what they are (the tuning phase; see the docstring)
    seed: int = 0


class _EMA:
    """Exponential moving average of parameters, swapped in for saving and evaluation."""

    def __init__(self, modules: Sequence[torch.nn.Module], decay: float, warm_start: bool = True):
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay
        self.warm_start = warm_start

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = self.decay
        if self.warm_start:  # from scratch: early averages are not dominated by the random start
            d = min(d, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def _lr_factor(step: int, cfg: AutoencoderTraining) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _sigmas(n: int, cfg: AutoencoderTraining, gen: torch.Generator) -> torch.Tensor:
    if cfg.sigma_sampling == "log_normal":
        return sample_sigmas_log_normal(n, *cfg.sigma_range, cfg.p_mean, cfg.p_std, generator=gen)
    if cfg.sigma_sampling == "log_uniform":
        return sample_sigmas(n, *cfg.sigma_range, generator=gen)
    raise ValueError(f"unknown sigma_sampling {cfg.sigma_sampling!r} (log_normal or log_uniform)")


def make_batch(data: KeyframeSet, rows: np.ndarray, tokenizer: ToyTokenizer, adapter: RendererAdapter,
               identities: Optional[torch.Tensor], cfg: AutoencoderTraining, gen: torch.Generator,
               text_context: torch.Tensor, device) -> RendererBatch:
    """One training batch: augmented pixels, their tokens (with gradient into the tokenizer), identities."""
    x = to_pixels(data.images[rows]).to(device)
    flip = torch.zeros(len(rows), dtype=torch.bool)
    if cfg.flip:
        flip = torch.rand(len(rows), generator=gen) < 0.5
        x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
    u = float(torch.rand((), generator=gen))
    tokens = tokenizer(x)
    ids = places = None
    if u < cfg.uncond_prob:
        tokens = torch.zeros_like(tokens)
    elif identities is not None and adapter.identity_proj is not None and u >= cfg.uncond_prob + cfg.no_identity_prob:
        n = len(data.characters[rows[0]])
        if not n and adapter.has_empty_slots:  # nobody on screen: every place "empty" (as the render node passes it)
            ids = torch.zeros(len(rows), 0, identities.shape[1], device=device)
        elif n:
            chars = torch.tensor([data.characters[r] for r in rows])  # [B, n], left to right
            chars = torch.where(flip[:, None], chars.flip(1), chars)  # a mirrored keyframe lists them right to left
            ids = identities[chars.flatten()]
            ids = randomise_identity(ids, cfg.identity_noise, gen).reshape(len(rows), n, -1).to(device)
            if adapter.place_head is not None:  # the true places, left to right (a mirrored keyframe's mirrored)
                places = torch.tensor([sorted(p for _, p in data.labels[r].on_screen) for r in rows])
                places = torch.where(flip[:, None], (N_POSITIONS - 1 - places).flip(1), places)
    ctx = text_context.to(device).expand(len(rows), -1, -1)
    weights = pixel_weights(data, rows, flip, cfg)
    if weights is not None:
        weights = weights.to(device)
    targets = None
    if adapter.place_head is not None and u >= cfg.uncond_prob:  # zeroed tokens show no places
        targets = place_targets(data, rows, flip).to(device)
    return RendererBatch(latents=x, tokens=tokens, text_context=ctx, identities=ids, pixel_weights=weights, places=places,
                         place_targets=targets)


def pixel_weights(data: KeyframeSet, rows: np.ndarray, flip: torch.Tensor, cfg: AutoencoderTraining) -> Optional[torch.Tensor]:
    """``[B, 1, S, S]`` loss weight of every pixel (mirrored with the picture), or ``None`` when all weigh 1: a
    figure's box ``1 + figure_weight``, its hat's box ``hat_weight`` more again, the background 1 or, with
    ``place_weights``, the weight of the keyframe's place."""
    hat_weight = cfg.hat_weight if data.hats is not None else 0.0
    if not (cfg.figure_weight or hat_weight or cfg.place_weights):
        return None
    figures = torch.from_numpy(data.figures[rows])[:, None]  # [B, 1, S, S]
    weights = 1 + cfg.figure_weight * figures.float()
    if hat_weight:
        weights = weights + hat_weight * torch.from_numpy(data.hats[rows]).float()[:, None]
    if cfg.place_weights:
        if len(cfg.place_weights) != N_LOCATIONS:
            raise ValueError(f"place_weights needs one weight per location ({N_LOCATIONS}), got {len(cfg.place_weights)}")
        place = torch.tensor([float(cfg.place_weights[data.labels[r].location]) for r in rows])
        weights = torch.where(figures, weights, place[:, None, None, None])
    return torch.where(flip[:, None, None, None], weights.flip(-1), weights)


def place_targets(data: KeyframeSet, rows: np.ndarray, flip: torch.Tensor) -> torch.Tensor:
    """``[B, places]``: 1 where a figure stands (mirrored with the picture), the place head's target. Its loss also
    reaches the tokenizer (the tokens are not detached): the tokens are taught to carry where figures stand, which
    is what the head reads them for."""
    taken = torch.zeros(len(rows), N_POSITIONS)
    for i, r in enumerate(rows):
        for _, p in data.labels[r].on_screen:
            taken[i, p] = 1.0
    return torch.where(flip[:, None], taken.flip(1), taken)


def train_autoencoder(tokenizer: ToyTokenizer, adapter: RendererAdapter, base: torch.nn.Module, denoise: Denoiser,
                      data: KeyframeSet, identities: Optional[torch.Tensor], text_context: torch.Tensor,
                      cfg: AutoencoderTraining = AutoencoderTraining(), device=None,
                      progress: Optional[Callable[[int, int, float], None]] = None, resume: Optional[str] = None,
                      save_every: Optional[float] = None) -> list[float]:
    """Train tokenizer, base UNet and adapter in place; returns the loss of every step.

    ``identities`` is ``[n_characters, Di]`` (each character's reference identity) or ``None`` (the renderer
    without identity conditioning). ``text_context`` ``[1, L, C]`` is the fixed text condition the toy world
    renders with. On return the modules hold the EMA weights when ``cfg.ema`` is set.

    ``progress(step, steps, loss)`` is called after every step and may raise to stop (a Ctrl-C). ``resume``: a file
    for the whole training state (``training_state``: the trained modules, AdamW's moments, the moving average, the
    generator, the losses), written every ``save_every`` seconds (default: ``training_state.SAVE_EVERY_SECONDS``) and
    when ``progress`` raises; a run that finds this training's state there (``training_fingerprint``: the same
    keyframes, identities, text, settings, step count and starting weights) continues from it (its first ``progress``
    call is the step after the saved one) and ends with the uninterrupted run's weights. The caller removes the file
    once the trained files are saved (``training_state.remove_state``)."""
    device = device or next(base.parameters()).device
    modules = [tokenizer, adapter, base] if cfg.train_tokenizer else [adapter, base]
    if not cfg.train_tokenizer:
        tokenizer.eval().requires_grad_(False)
    for m in modules:
        m.train().requires_grad_(True)
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99), foreach=True)
    ema = _EMA(modules, cfg.ema, cfg.ema_warm_start) if cfg.ema else None
    gen = torch.Generator().manual_seed(int(cfg.seed))
    groups = data.by_count()
    counts = np.asarray([len(g) for g in groups.values()], dtype=np.float64)
    keys = list(groups)
    losses, start = [], 0
    named = dict(zip(("tokenizer", "adapter", "base") if cfg.train_tokenizer else ("adapter", "base"), modules))
    kept = {f"ema.{i}": t for i, t in enumerate(ema.shadow)} if ema is not None else {}
    if resume is not None:
        fingerprint = training_fingerprint(tokenizer, adapter, base, data, identities, text_context, cfg)
        restored = load_state(resume, metadata_key=STATE_METADATA_KEY, fingerprint=fingerprint, max_step=cfg.steps,
                              modules=named, optimizer=optimizer, generator=gen, tensors=kept)
        if restored is not None:
            start, losses = restored["step"], restored["losses"]
        schedule = SaveSchedule(lambda done: save_state(
            resume, metadata_key=STATE_METADATA_KEY, fingerprint=fingerprint, step=done, losses=losses, modules=named,
            optimizer=optimizer, generator=gen, tensors=kept), save_every)
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        n = keys[int(torch.multinomial(torch.from_numpy(counts / counts.sum()), 1, generator=gen))]
        pool = groups[n]
        rows = pool[torch.randint(len(pool), (min(cfg.batch_size, len(pool)),), generator=gen).numpy()]
        batch = make_batch(data, rows, tokenizer, adapter, identities, cfg, gen, text_context, device)
        sigmas = _sigmas(len(rows), cfg, gen).to(device)
        noise = torch.randn(batch.latents.shape, generator=gen).to(device)
        loss = renderer_loss(adapter, batch, denoise, sigmas, noise, cfg.weighting)
        if batch.place_targets is not None and cfg.place_weight:
            loss = loss + cfg.place_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                adapter.place_logits(batch.tokens), batch.place_targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if ema is not None:
            ema.update(step)
        losses.append(float(loss.detach()))
        if resume is not None:
            schedule.after_step(step + 1)
        if progress is not None:
            try:
                progress(step + 1, cfg.steps, losses[-1])
            except BaseException:  # a Ctrl-C or a Cancel from the progress hook: keep the steps done
                if resume is not None:
                    schedule.save_now(step + 1)
                raise
    if ema is not None:
        ema.copy_to_params()
    for m in (tokenizer, adapter, base):
        m.eval().requires_grad_(False)
    return losses


#: The metadata key of the decoder training's state files (``training_state``).
STATE_METADATA_KEY = "moviedreamer_toycinema_autoencoder_state"


def training_fingerprint(tokenizer: ToyTokenizer, adapter: RendererAdapter, base: torch.nn.Module, data: KeyframeSet,
                         identities: Optional[torch.Tensor], text_context: torch.Tensor, cfg: AutoencoderTraining) -> str:
    """What makes two decoder trainings the same one, so a saved state is continued only by its own training: the
    keyframes (pixels, labels, casts, figure and hat boxes), the identities, the text condition, every setting (the
    step count too: the learning rate's cosine runs to the last step) and the three modules' starting weights
    (sampled, as the nodes tell models apart)."""
    h = hashlib.sha256(b"toycinema-autoencoder/1;")
    h.update(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    h.update(json.dumps([str(label) for label in data.labels] + [list(c) for c in data.characters]).encode())
    for array in (data.images, data.figures, data.hats):
        h.update(b"none;" if array is None else tensor_digest(torch.from_numpy(np.ascontiguousarray(array))))
    for t in (identities, text_context):
        h.update(b"none;" if t is None else tensor_digest(t))
    for m in (tokenizer, adapter, base):
        h.update(module_digest(m).encode())
    return h.hexdigest()


def reference_identities(embedder, size: int = 64) -> torch.Tensor:
    """``[n_characters, Di]``: every character's identity from its reference portrait (what ScriptEncode gives)."""
    from .render import render_reference
    from .world import N_CHARACTERS

    return torch.from_numpy(embedder.embed_many([render_reference(c, size) for c in range(N_CHARACTERS)])).float()

