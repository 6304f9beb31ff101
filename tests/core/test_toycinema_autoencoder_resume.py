"""The toy cinema's decoder training, stopped (Ctrl-C, a kill) and run again, continues from its saved state and ends
with the uninterrupted run's weights bit for bit; another training never takes the state up (``training_state``)."""

from __future__ import annotations

import os

import pytest
import torch

from moviedreamer_core.toycinema.autoencoder import AutoencoderTraining, keyframe_set, train_autoencoder
from moviedreamer_core.toycinema.grammar import generate_films
from moviedreamer_core.toycinema.tokenizer import ToyTokenizer

from .test_toycinema_autoencoder import C, StandInDenoiser, _adapter

STEPS = 10


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    return keyframe_set(generate_films(6, 2, n_shots=4), 32)


def modules():
    """The three modules as a fresh run of the same training builds them (same seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        tok = ToyTokenizer()
        return tok, _adapter(tok), StandInDenoiser()


def run(data, *, stop_after=None, resume=None, train_tokenizer=True, lr=1e-2, crash_at=None, save_every=None):
    """Train; returns (modules, losses, steps the progress hook saw). ``stop_after``: the hook raises after that step
    (a Ctrl-C); ``crash_at``: the denoiser raises during that step (a kill mid-step)."""
    tok, adapter, den = modules()
    seen = []
    calls = [0]

    def progress(step, total, loss):
        seen.append(step)
        if stop_after is not None and step == stop_after:
            raise Stop

    def denoise(*a):
        calls[0] += 1
        if crash_at is not None and calls[0] == crash_at:  # one denoiser call a step, from step 1
            raise Stop
        return den(*a)

    identities = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    cfg = AutoencoderTraining(steps=STEPS, batch_size=4, lr=lr, warmup_steps=2, ema=0.9, train_tokenizer=train_tokenizer)
    losses = train_autoencoder(tok, adapter, den, denoise, data, identities, torch.zeros(1, 1, C), cfg,
                               progress=progress, resume=resume, save_every=save_every)
    return (tok, adapter, den), losses, seen


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for ma, mb in zip(a, b)
               for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))


@pytest.mark.parametrize("train_tokenizer", [True, False])
def test_a_stopped_decoder_training_continues_and_ends_as_the_uninterrupted_one(data, tmp_path, train_tokenizer):
    whole, whole_losses, _ = run(data, train_tokenizer=train_tokenizer)
    state = str(tmp_path / "decoder.resume")
    with pytest.raises(Stop):
        run(data, stop_after=4, resume=state, train_tokenizer=train_tokenizer)
    assert os.path.isfile(state)
    again, losses, seen = run(data, resume=state, train_tokenizer=train_tokenizer)
    assert seen[0] == 5 and seen[-1] == STEPS  # the first step after the saved one, then on to the end
    assert losses == whole_losses
    assert same_weights(again, whole)  # tokenizer, renderer and UNet, as averaged (EMA) at the end


def test_a_kill_inside_a_step_keeps_the_last_periodic_save(data, tmp_path):
    whole, whole_losses, _ = run(data)
    state = str(tmp_path / "decoder.resume")
    with pytest.raises(Stop):  # the denoiser fails during step 7; saved after every step (save_every=0)
        run(data, resume=state, crash_at=7, save_every=0)
    again, losses, seen = run(data, resume=state)
    assert seen[0] == 7 and losses == whole_losses and same_weights(again, whole)


def test_another_training_starts_afresh_and_a_broken_state_is_ignored(data, tmp_path):
    state = str(tmp_path / "decoder.resume")
    with pytest.raises(Stop):
        run(data, stop_after=4, resume=state)
    _, _, seen = run(data, resume=state, lr=5e-3)  # another learning rate: another training
    assert seen[0] == 1
    assert os.path.isfile(state)  # the first training's state (the other one never saved), now truncated: unreadable
    with open(state, "r+b") as f:
        f.truncate(os.path.getsize(state) // 2)
    whole, whole_losses, _ = run(data)
    again, losses, seen = run(data, resume=state)
    assert seen[0] == 1 and losses == whole_losses and same_weights(again, whole)


def test_a_state_whose_moving_average_does_not_fit_leaves_the_training_untouched(tmp_path):
    """``training_state.load_state`` checks every part before restoring any: an extra tensor (the moving average) of
    another shape leaves the modules, the optimizer and the generator as they were."""
    from moviedreamer_core.training_state import load_state, save_state

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    path = str(tmp_path / "s.resume")
    save_state(path, metadata_key="k", fingerprint="f", step=1, losses=[0.5], modules={"net": net}, optimizer=opt,
               generator=gen, tensors={"ema.0": torch.zeros(4)})
    fresh = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    fresh_opt, fresh_gen = torch.optim.AdamW(fresh.parameters()), torch.Generator().manual_seed(9)
    kw = dict(metadata_key="k", fingerprint="f", max_step=5, modules={"net": fresh}, optimizer=fresh_opt, generator=fresh_gen)
    assert load_state(path, tensors={"ema.0": torch.zeros(5)}, **kw) is None
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items()) and not fresh_opt.state
    assert torch.equal(fresh_gen.get_state(), torch.Generator().manual_seed(9).get_state())
    kept = torch.ones(4)
    assert load_state(path, tensors={"ema.0": kept}, **kw)["step"] == 1 and torch.equal(kept, torch.zeros(4))
    assert torch.equal(fresh.weight, net.weight) and fresh_opt.state
    with pytest.raises(ValueError, match="cannot be told apart"):
        save_state(path, metadata_key="k", fingerprint="f", step=1, losses=[0.5], modules={"optimizer": net},
                   optimizer=opt, generator=gen)
