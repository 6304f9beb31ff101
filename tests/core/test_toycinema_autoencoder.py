"""The toy cinema's tokenizer and its diffusion-autoencoder training loop, without the host.

The loop's denoiser here is a small pure-PyTorch stand-in with the same signature as the host UNet with the
adapter patched in (``renderer/train.py``'s ``Denoiser``); the host version is tested in tests/host.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.renderer.train import RendererBatch, renderer_loss
from moviedreamer_core.storyboard_sheet import contact_sheet
from moviedreamer_core.toycinema.autoencoder import AutoencoderTraining, keyframe_set, train_autoencoder
from moviedreamer_core.toycinema.grammar import generate_films
from moviedreamer_core.toycinema.tokenizer import ToyTokenizer, to_pixels

C = 16  # context width of the stand-in denoiser


def _adapter(tokenizer: ToyTokenizer, identity_dim: int | None = 8) -> RendererAdapter:
    return RendererAdapter(RendererConfig(token_space=tokenizer.space.to_dict(), context_dim=C, layer_dims=[C],
                                          context_tokens=2, identity_tokens=2,
                                          identity_space={"encoder": "test", "dim": identity_dim} if identity_dim else None))


class StandInDenoiser(nn.Module):
    """Predicts the clean image from the noisy one, a per-channel bias read from the token context and one
    from the identity context; records the identity context shapes it was given."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.read = nn.Linear(C, 3)
        self.identity_shapes: list = []

    def forward(self, noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        x = noisy / (1 + sigmas.view(-1, 1, 1, 1) ** 2).sqrt()
        bias = self.read(token_ctx.mean(1))
        if identity_ctx is not None:
            self.identity_shapes.append(tuple(identity_ctx.shape))
            bias = bias + self.read(identity_ctx.mean(1))
        return self.conv(x) + bias[:, :, None, None]


def test_tokenizer_tokens_are_normalised_and_round_trip(tmp_path):
    torch.manual_seed(0)
    tok = ToyTokenizer()
    images = generate_films(3, 1)[0].images(32)
    tokens = tok.encode_images(images)
    assert tokens.shape == (len(images), 2, 16)
    assert torch.allclose(tokens.mean(-1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(tokens.var(-1, unbiased=False), torch.ones(()), atol=1e-2)  # LayerNorm eps
    assert tok.encode_images(np.stack([np.kron(im, np.ones((2, 2, 1), np.uint8)) for im in images[:2]])).shape == (2, 2, 16)
    path = str(tmp_path / "tok.safetensors")
    tok.save(path)
    again = ToyTokenizer.load(path)
    assert again.space == tok.space and tok.space.source.startswith("toycinema.tokenizer.")
    assert torch.equal(again.encode_images(images), tokens)
    other = ToyTokenizer()
    assert other.space != tok.space  # different weights, different token space: a renderer refuses the other's tokens


def test_renderer_loss_reads_several_identities_per_row_as_the_render_node_concatenates_them():
    torch.manual_seed(0)
    tok = ToyTokenizer()
    adapter = _adapter(tok)
    seen = {}

    def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        seen["id"] = identity_ctx
        return noisy

    ids = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    batch = RendererBatch(torch.zeros(3, 3, 8, 8), torch.randn(3, 2, 16), torch.zeros(3, 1, C), ids)
    renderer_loss(adapter, batch, denoise, torch.ones(3), torch.zeros(3, 3, 8, 8))
    assert seen["id"].shape == (3, 2 * 2, C)
    expected = torch.cat([adapter.project_identity(ids[:, 0]), adapter.project_identity(ids[:, 1])], dim=1)
    assert torch.allclose(seen["id"], expected, atol=1e-6)
    # [B, Di] is one character per row (the renderer trainer's batches), not one keyframe with B characters
    renderer_loss(adapter, RendererBatch(batch.latents, batch.tokens, batch.text_context, ids[:, 0]), denoise,
                  torch.ones(3), torch.zeros(3, 3, 8, 8))
    assert seen["id"].shape == (3, 2, C)
    assert torch.allclose(seen["id"], adapter.project_identity(ids[:, 0]), atol=1e-6)


def test_training_loop_lowers_the_loss_with_equal_identity_counts_per_batch():
    torch.manual_seed(0)
    films = generate_films(5, 6, n_shots=6)
    data = keyframe_set(films, 32)
    assert len(data) == sum(f.n_keyframes for f in films) and data.images.shape[1:] == (32, 32, 3)
    assert set(data.by_count()) >= {1, 2}
    tok, den = ToyTokenizer(), StandInDenoiser()
    adapter = _adapter(tok)
    head_before = tok.head.weight.detach().clone()
    identities = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    cfg = AutoencoderTraining(steps=60, batch_size=8, lr=3e-3, warmup_steps=5, ema=0.0, sigma_range=(0.05, 2.0))
    losses = train_autoencoder(tok, adapter, den, den, data, identities, torch.zeros(1, 1, C), cfg)
    assert len(losses) == 60 and np.mean(losses[-15:]) < 0.7 * np.mean(losses[:15])
    M = adapter.cfg.identity_tokens
    assert den.identity_shapes and all(s[1] % M == 0 and 1 <= s[1] // M <= 3 for s in den.identity_shapes)
    assert not any(p.requires_grad for p in tok.parameters())  # left frozen and in eval mode for saving
    assert not torch.equal(head_before, tok.head.weight)  # the tokenizer learns through the decoder's loss


def test_ema_weights_are_what_the_modules_hold_after_training():
    data = keyframe_set(generate_films(6, 2, n_shots=4), 32)

    def run(ema: float):
        torch.manual_seed(1)
        tok, den = ToyTokenizer(), StandInDenoiser()
        start = den.conv.weight.detach().clone()
        cfg = AutoencoderTraining(steps=20, batch_size=4, lr=1e-2, warmup_steps=1, ema=ema)
        train_autoencoder(tok, _adapter(tok, identity_dim=None), den, den, data, None, torch.zeros(1, 1, C), cfg)
        return (den.conv.weight - start).norm()

    # the same run; the averaged weights lag behind the raw ones, closer to where training started
    assert run(0.9) < run(0.0)


def test_pixels_are_in_the_diffusion_range():
    x = to_pixels(np.array([[[[0, 128, 255]]]], np.uint8))
    assert x.shape == (1, 3, 1, 1) and x.min() == -1 and x.max() == 1


def test_contact_sheet_lays_out_and_captions_every_keyframe():
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(7)]
    sheet = contact_sheet(frames, [f"s{i}: Ava walks in." for i in range(7)], columns=3, cell=64)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 4 + 3 * 68
    rows = 3
    assert sheet.shape[0] == 4 + rows * (64 + 24 + 4)
    assert (sheet[4:68, 4 + 68:4 + 68 + 64] == 40).all()  # second keyframe enlarged, crisp (nearest)
    caption = sheet[4 + 64:4 + 64 + 24, 4:68]
    assert (caption > 150).any()  # text drawn under it
    with pytest.raises(ValueError):
        contact_sheet([], [])


def test_a_sheet_too_large_to_hold_gets_narrower_cells_and_one_past_any_cell_is_refused():
    """A long movie at the node's widest cells asked for tens of gigabytes of sheet: the cell narrows to the widest
    that keeps the sheet within its pixels, and a sheet that no cell fits is refused before anything is drawn."""
    from moviedreamer_core.storyboard_sheet import MIN_CELL, fitting_cell, sheet_size

    assert fitting_cell(7, 1.0, columns=3, cell=64) == 64  # fits: unchanged
    cap = 200_000
    cell = fitting_cell(40, 9 / 16, columns=4, cell=2048, max_pixels=cap)
    w, h = sheet_size(40, 9 / 16, columns=4, cell=cell, text_h=24, margin=4)
    w1, h1 = sheet_size(40, 9 / 16, columns=4, cell=cell + 1, text_h=24, margin=4)
    assert MIN_CELL <= cell < 2048 and w * h <= cap < w1 * h1  # the widest that fits
    frames = [np.full((36, 64, 3), 5 * i, np.uint8) for i in range(40)]
    sheet = contact_sheet(frames, [f"s{i}: Bo waits." for i in range(40)], columns=4, cell=2048, max_pixels=cap)
    assert sheet.shape[0] * sheet.shape[1] <= cap and sheet.shape[1] == w
    with pytest.raises(ValueError, match="even with 8-pixel cells"):
        contact_sheet(frames[:1] * 5000, columns=64, cell=64, max_pixels=cap)


def test_log_normal_noise_levels_follow_their_distribution_inside_the_model_range():
    from moviedreamer_core.renderer.train import sample_sigmas, sample_sigmas_log_normal

    gen = torch.Generator().manual_seed(0)
    s = sample_sigmas_log_normal(20000, 0.03, 14.6, -1.2, 1.2, generator=gen)
    lo, hi = torch.tensor([0.03, 14.6])  # the bounds as float32, as the clamp applies them
    assert s.min() >= lo and s.max() <= hi and (s == lo).any()  # clamped, not resampled
    inside = s[(s > lo) & (s < hi)].log()
    assert abs(float(inside.median()) + 1.2) < 0.05  # centred on p_mean
    assert abs(float((s > 1).float().mean()) - 0.159) < 0.02  # P(z > 1) of a standard normal
    uniform = sample_sigmas(20000, 0.03, 14.6, generator=gen)
    assert abs(float((uniform > 1).float().mean()) - 0.434) < 0.02  # what log-uniform spends above sigma 1


def test_training_refuses_an_unknown_noise_level_distribution():
    films = generate_films(1, 2)
    tokenizer = ToyTokenizer()
    cfg = AutoencoderTraining(steps=1, batch_size=2, sigma_sampling="uniform")
    with pytest.raises(ValueError, match="sigma_sampling"):
        den = StandInDenoiser()
        train_autoencoder(tokenizer, _adapter(tokenizer, None), den, den, keyframe_set(films, 32), None,
                          torch.zeros(1, 1, C), cfg)


def test_a_mirrored_training_keyframe_lists_its_characters_right_to_left():
    """The renderer's identity slots read the character list left to right, so the horizontal flip must reverse
    the list with the picture, row by row."""
    from moviedreamer_core.toycinema.autoencoder import make_batch

    torch.manual_seed(0)
    films = generate_films(5, 8, n_shots=8)
    data = keyframe_set(films, 32)
    rows = data.by_count()[2][:24]
    tok = ToyTokenizer()
    adapter = _adapter(tok)
    identities = torch.eye(8)[:6]  # character c's identity is the one-hot e_c
    cfg = AutoencoderTraining(uncond_prob=0.0, no_identity_prob=0.0, identity_noise=0.0, flip=True)
    batch = make_batch(data, rows, tok, adapter, identities, cfg, torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    x = to_pixels(data.images[rows])
    flipped = [not torch.equal(batch.latents[i], x[i]) for i in range(len(rows))]
    assert 0 < sum(flipped) < len(rows)
    for i, r in enumerate(rows):
        if flipped[i]:
            assert torch.equal(batch.latents[i], x[i].flip(-1))
        order = list(data.characters[r])[::-1] if flipped[i] else list(data.characters[r])
        assert batch.identities[i].argmax(-1).tolist() == order


def test_figure_weight_puts_the_loss_on_the_figures_and_mirrors_with_the_picture():
    """With ``figure_weight`` the pixels of the figures' boxes weigh ``1 + figure_weight``, those of their hats'
    boxes ``hat_weight`` more again, and the rest 1; the map flips with a mirrored keyframe, and the loss counts an
    error by its pixel's weight."""
    from moviedreamer_core.toycinema.autoencoder import make_batch

    torch.manual_seed(0)
    films = generate_films(5, 8, n_shots=8)
    data = keyframe_set(films, 32)
    assert data.figures.shape == (len(data), 32, 32) and data.figures.dtype == bool
    rows = data.by_count()[1][:24]
    tok = ToyTokenizer()
    adapter = _adapter(tok)
    cfg = AutoencoderTraining(uncond_prob=0.0, no_identity_prob=0.0, flip=True, figure_weight=4.0)
    batch = make_batch(data, rows, tok, adapter, torch.randn(6, 8), cfg, torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    w = batch.pixel_weights
    assert w.shape == (len(rows), 1, 32, 32)
    x = to_pixels(data.images[rows])
    for i, r in enumerate(rows):
        boxes, hats = torch.from_numpy(data.figures[r]), torch.from_numpy(data.hats[r])
        if not torch.equal(batch.latents[i], x[i]):
            boxes, hats = boxes.flip(-1), hats.flip(-1)
        assert hats.any() and bool((boxes | ~hats).all())  # every hat box lies in its figure's box
        assert w[i, 0][boxes & ~hats].unique().tolist() == [5.0] and w[i, 0][~boxes].unique().tolist() == [1.0]
        assert w[i, 0][hats].unique().tolist() == [5.0 + cfg.hat_weight] and cfg.hat_weight == 4.0
    plain = make_batch(data, rows, tok, adapter, None, AutoencoderTraining(figure_weight=0.0, hat_weight=0.0),
                       torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    assert plain.pixel_weights is None
    hats_only = make_batch(data, rows, tok, adapter, None, AutoencoderTraining(figure_weight=0.0, flip=False),
                           torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu").pixel_weights
    for i, r in enumerate(rows):  # the hats weigh more without the figures' weight too
        hats = torch.from_numpy(data.hats[r])
        assert hats_only[i, 0][hats].unique().tolist() == [5.0] and hats_only[i, 0][~hats].unique().tolist() == [1.0]

    # the loss: an error only where the weight is zero costs nothing; where it is 2, twice the unweighted loss
    def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        return torch.zeros_like(noisy)

    latents = torch.zeros(2, 3, 4, 4)
    latents[:, :, :2] = 1.0  # the prediction (zeros) is wrong on the top half only
    top = torch.zeros(2, 1, 4, 4)
    top[:, :, :2] = 2.0
    args = (torch.ones(2), torch.zeros(2, 3, 4, 4))
    b = RendererBatch(latents, torch.randn(2, 2, 16), torch.zeros(2, 1, C))
    base = renderer_loss(adapter, b, denoise, *args)
    assert float(renderer_loss(adapter, RendererBatch(**{**b.__dict__, "pixel_weights": 2 - top}), denoise, *args)) == 0.0
    torch.testing.assert_close(renderer_loss(adapter, RendererBatch(**{**b.__dict__, "pixel_weights": top}), denoise, *args), 2 * base)


def test_place_weights_weigh_each_keyframes_background_by_its_place():
    """The decoder's tuning phase (``cli/toycinema_train.py`` ``decoder_tune``): with ``place_weights`` the background
    pixels of a keyframe weigh its place's weight, a figure's and its hat's pixels what they weighed before; a list
    that is not one weight per location is refused."""
    from moviedreamer_core.toycinema.autoencoder import make_batch
    from moviedreamer_core.toycinema.world import N_LOCATIONS

    torch.manual_seed(0)
    data = keyframe_set(generate_films(5, 8, n_shots=8), 32)
    rows = data.by_count()[1][:32]
    assert len({data.labels[r].location for r in rows}) >= 3
    tok = ToyTokenizer()
    adapter = _adapter(tok)
    places = tuple(2.0 + loc for loc in range(N_LOCATIONS))
    cfg = AutoencoderTraining(uncond_prob=0.0, no_identity_prob=0.0, flip=True, place_weights=places)
    w = make_batch(data, rows, tok, adapter, torch.randn(6, 8), cfg, torch.Generator().manual_seed(3), torch.zeros(1, 1, C),
                   "cpu").pixel_weights
    plain = make_batch(data, rows, tok, adapter, torch.randn(6, 8), AutoencoderTraining(uncond_prob=0.0, no_identity_prob=0.0),
                       torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    mirrored = 0
    for i, r in enumerate(rows):
        boxes = torch.from_numpy(data.figures[r])
        if not torch.equal(plain.latents[i], to_pixels(data.images[r:r + 1])[0]):  # the same flips as ``w``'s batch
            boxes = boxes.flip(-1)
            mirrored += 1
        assert w[i, 0][~boxes].unique().tolist() == [places[data.labels[r].location]]
        assert torch.equal(w[i, 0][boxes], plain.pixel_weights[i, 0][boxes])
    assert 0 < mirrored < len(rows)
    with pytest.raises(ValueError, match="one weight per location"):
        make_batch(data, rows, tok, adapter, None, AutoencoderTraining(place_weights=(1.0, 2.0)),
                   torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")


def test_a_frozen_tokenizer_keeps_its_tokens_while_the_decoder_trains():
    """``train_tokenizer=False`` (the tuning phase): the tokenizer's weights stay bit for bit, so tokens and a planner
    trained on them stay valid, while the decoder still learns; ``ema_warm_start=False`` averages from the first step
    (a tuned decoder starts from trained weights, not from noise)."""
    data = keyframe_set(generate_films(6, 2, n_shots=4), 32)
    torch.manual_seed(1)
    tok, den = ToyTokenizer(), StandInDenoiser()
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    start = den.conv.weight.detach().clone()
    cfg = AutoencoderTraining(steps=20, batch_size=4, lr=1e-2, warmup_steps=1, train_tokenizer=False, ema=0.0)
    train_autoencoder(tok, _adapter(tok, identity_dim=None), den, den, data, None, torch.zeros(1, 1, C), cfg)
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())
    assert not torch.equal(start, den.conv.weight) and not any(p.requires_grad for p in den.parameters())

    def moved(warm_start: bool):
        torch.manual_seed(1)
        tok, den = ToyTokenizer(), StandInDenoiser()
        start = den.conv.weight.detach().clone()
        cfg = AutoencoderTraining(steps=20, batch_size=4, lr=1e-2, warmup_steps=1, ema=0.99, ema_warm_start=warm_start,
                                  train_tokenizer=False)
        train_autoencoder(tok, _adapter(tok, identity_dim=None), den, den, data, None, torch.zeros(1, 1, C), cfg)
        return (den.conv.weight - start).norm()

    # averaged from the first step at 0.99, twenty steps barely move the average; the warm start follows the raw weights
    assert moved(False) < 0.5 * moved(True)


def test_an_empty_shot_trains_with_every_place_empty_when_the_renderer_has_fillers():
    """A renderer with "nobody here" fillers learns empty shots from an all-empty identity context (what the render
    node gives it), not from no identity path, which is the training's identity dropout; without fillers an empty
    shot has no identity context, as before."""
    from moviedreamer_core.toycinema.autoencoder import make_batch

    data = keyframe_set(generate_films(5, 8, n_shots=8), 32)
    rows = data.by_count()[0][:8]
    tok = ToyTokenizer()
    cfg = AutoencoderTraining(uncond_prob=0.0, no_identity_prob=0.0)
    filled = RendererAdapter(RendererConfig(**{**_adapter(tok).cfg.__dict__, "identity_slots": 3, "identity_empty_slots": True}))
    batch = make_batch(data, rows, tok, filled, torch.randn(6, 8), cfg, torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    assert batch.identities.shape == (len(rows), 0, 8)
    assert filled.identity_context(batch.identities).shape == (len(rows), 6, C)  # three empty places of two tokens
    plain = make_batch(data, rows, tok, _adapter(tok), torch.randn(6, 8), cfg, torch.Generator().manual_seed(3),
                       torch.zeros(1, 1, C), "cpu")
    assert plain.identities is None
    dropout = make_batch(data, rows, tok, filled, torch.randn(6, 8), AutoencoderTraining(uncond_prob=0.0, no_identity_prob=1.0),
                         torch.Generator().manual_seed(3), torch.zeros(1, 1, C), "cpu")
    assert dropout.identities is None  # the identity dropout stays what it was


def test_the_tuning_phase_can_add_keyframes_of_empty_places_framed_closer():
    """The decoder drew a place with nobody there as a wide shot whatever the tokens' camera: every keyframe without a
    figure in its training films was wide. Its tuning phase adds keyframes of empty places framed medium or close-up
    (``empty_closer_keyframes``), every place and light alike, joined to the films' keyframes (``joined``): no figure,
    and each framed as its label says (read without being told, ``background_match.empty_framing``)."""
    from moviedreamer_core.toycinema.autoencoder import empty_closer_keyframes, joined
    from moviedreamer_core.toycinema.background_match import empty_framing
    from moviedreamer_core.toycinema.world import camera_id

    extra = empty_closer_keyframes(60, seed=3)
    assert len(extra) == 60 and extra.images.shape == (60, 32, 32, 3)
    assert all(chars == () and label.on_screen == () for chars, label in zip(extra.characters, extra.labels))
    assert not extra.figures.any() and not extra.hats.any()
    assert {label.camera for label in extra.labels} == {camera_id("medium"), camera_id("close_up")}
    assert len({label.location for label in extra.labels}) == 6
    assert [empty_framing(image) for image in extra.images] == [(label.camera, label.location) for label in extra.labels]
    assert empty_closer_keyframes(60, seed=3).labels == extra.labels
    films = keyframe_set(generate_films(6, 2, n_shots=4), 32)
    both = joined(films, extra)
    assert len(both) == len(films) + 60 and both.labels[len(films):] == extra.labels
    assert (both.images[:len(films)] == films.images).all() and both.hats.shape == (len(both), 32, 32)
    assert len(both.by_count()[0]) == len(films.by_count().get(0, ())) + 60
