"""A renderer training interrupted (a Cancel, a crash) is taken up by the next run of the same training and ends with
exactly the renderer the uninterrupted run makes; another training never takes up its state (``renderer/fit_state``)."""

from __future__ import annotations

import os

import pytest
import torch

from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.renderer.fit import EVAL_SIGMAS, RendererSample, fit_renderer
from moviedreamer_core.renderer.fit_state import clear_fit_state, state_path

DI, D, C = 8, 4, 16
STEPS = 12


class Cancelled(Exception):
    pass


def fresh_adapter() -> RendererAdapter:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": D}, context_dim=C, layer_dims=[8],
                                              context_tokens=2, identity_space={"encoder": "i", "dim": DI}, identity_tokens=2))


def samples(shift: float = 0.0) -> list[RendererSample]:
    g = torch.Generator().manual_seed(1)
    return [RendererSample(torch.randn(4, 2, 2, generator=g) + shift, torch.randn(1, D, generator=g),
                           torch.randn(3, C, generator=g), torch.nn.functional.normalize(torch.randn(DI, generator=g), dim=0))
            for _ in range(5)]


def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
    """A prediction that the adapter's contexts steer (so training moves the weights and the loss)."""
    return noisy * 0.5 + token_ctx.mean(dim=(1, 2))[:, None, None, None] + identity_ctx.mean(dim=(1, 2))[:, None, None, None]


def fit(adapter, data, path, *, steps=STEPS, cancel_at=None, seen=None, **kw):
    def progress(step, total, loss):
        if seen is not None:
            seen.append(step)
        if step == cancel_at:
            raise Cancelled()

    return fit_renderer(adapter, data, denoise, steps=steps, batch_size=2, learning_rate=1e-2, seed=3,
                        progress=progress, resume=path, settings={"model": "tiny"}, **kw)


def weights(adapter):
    return {k: v.clone() for k, v in adapter.state_dict().items()}


def test_a_cancelled_training_resumes_where_it_stopped_and_ends_as_the_uninterrupted_one(tmp_path):
    path = state_path(str(tmp_path / "r.safetensors"))
    whole = fresh_adapter()
    reference = fit(whole, samples(), str(tmp_path / "other" / "x.resume"))
    assert reference.resumed_from == 0

    first = fresh_adapter()
    with pytest.raises(Cancelled):
        fit(first, samples(), path, cancel_at=5)
    assert os.path.isfile(path), "the Cancel left the state of its five steps"
    second, seen = fresh_adapter(), []
    result = fit(second, samples(), path, seen=seen)
    assert result.resumed_from == 5 and seen == list(range(6, STEPS + 1)), seen
    for k, v in weights(whole).items():
        assert torch.equal(second.state_dict()[k], v), k
    assert result.losses == reference.losses and result.eval_before == reference.eval_before
    assert result.eval_after == reference.eval_after
    clear_fit_state(str(tmp_path / "r.safetensors"))
    assert not os.path.exists(path)


def test_the_state_is_saved_while_training_so_a_crash_loses_little(tmp_path):
    """A crash (here: an error inside a step, after the periodic save of the step before) keeps what was saved."""
    path = str(tmp_path / "r.resume")
    calls = []

    def failing(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        calls.append(1)
        if len(calls) == EVAL_SIGMAS + 8:  # the evaluation (a call per noise level), then one call a step: the 8th fails
            raise MemoryError("out of memory")
        return denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx)

    with pytest.raises(MemoryError):
        fit_renderer(fresh_adapter(), samples(), failing, steps=STEPS, batch_size=2, learning_rate=1e-2, seed=3,
                     resume=path, settings={"model": "tiny"}, save_every=0.0)
    seen = []
    result = fit(fresh_adapter(), samples(), path, seen=seen)
    assert result.resumed_from == 7 and seen[0] == 8


def test_another_training_does_not_take_up_the_state(tmp_path):
    path = str(tmp_path / "r.resume")
    with pytest.raises(Cancelled):
        fit(fresh_adapter(), samples(), path, cancel_at=4)
    for changed in ({"data": samples(shift=0.5)}, {"settings": {"model": "another"}}, {"learning_rate": 2e-2},
                    {"steps": 3}):  # other samples, another frozen model, another setting, fewer steps than saved
        data = changed.pop("data", samples())
        settings = changed.pop("settings", {"model": "tiny"})
        result = fit_renderer(fresh_adapter(), data, denoise, steps=changed.get("steps", STEPS), batch_size=2,
                              learning_rate=changed.get("learning_rate", 1e-2), seed=3, resume=path, settings=settings,
                              save_every=1e9)
        assert result.resumed_from == 0, changed
    # none of them wrote over it (they saved nothing); more steps than the interrupted run asked for take it up (the
    # learning rate is constant, so a longer run's first steps are the shorter run's)
    assert fit(fresh_adapter(), samples(), path, steps=STEPS + 4).resumed_from == 4


def test_an_unreadable_state_file_is_ignored(tmp_path):
    path = tmp_path / "r.resume"
    path.write_bytes(b"\x00" * 100)
    assert fit(fresh_adapter(), samples(), str(path)).resumed_from == 0


@pytest.mark.parametrize("tamper", ["weight shape", "moment shape", "losses", "generator"])
def test_a_state_that_does_not_fit_the_training_is_ignored_before_anything_is_changed(tmp_path, tamper):
    """A state file with this training's fingerprint whose tensors do not fit (edited, or written by a broken
    version) is ignored as a whole: the run starts afresh and ends as the uninterrupted run, nothing half-restored."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = str(tmp_path / "r.resume")
    with pytest.raises(Cancelled):
        fit(fresh_adapter(), samples(), path, cancel_at=4)
    with safe_open(path, framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if tamper == "weight shape":
        key = next(k for k in tensors if k.startswith("adapter."))
        tensors[key] = torch.zeros(tensors[key].numel() + 1)
    elif tamper == "moment shape":
        key = next(k for k in tensors if k.startswith("optimizer.") and k.endswith("exp_avg"))
        tensors[key] = torch.zeros(3, 3)
    elif tamper == "losses":
        tensors["losses"] = tensors["losses"][:2]
    else:
        tensors["generator"] = tensors["generator"][:10]
    save_file(tensors, path, metadata=meta)
    whole = fresh_adapter()
    fit(whole, samples(), str(tmp_path / "whole.resume"))
    again = fresh_adapter()
    assert fit(again, samples(), path).resumed_from == 0
    for k, v in whole.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


# ------------------------------------------------------------------------------------------ the encoded samples


def _encoded() -> list[RendererSample]:
    """Samples as the training node encodes them: captions shared by tensor, a photo without a face, SDXL's pooled."""
    g = torch.Generator().manual_seed(2)
    texts = [(torch.randn(3, C, generator=g), torch.randn(6, generator=g)) for _ in range(2)]
    out = []
    for i in range(5):
        text, pooled = texts[i % 2]
        identity = None if i == 3 else torch.nn.functional.normalize(torch.randn(DI, generator=g), dim=0)
        out.append(RendererSample(torch.randn(4, 2, 2, generator=g), torch.randn(1, D, generator=g), text, identity,
                                  pooled=pooled))
    return out


def test_encoded_samples_are_read_back_as_written_with_the_generator_after_the_encoding(tmp_path):
    """``sample_cache``: every tensor of every sample back bit for bit (no identity stays none), each caption's
    encoding stored once and shared again, the generator's state and the extra values returned; nothing for another
    training's fingerprint or where there is no file."""
    from safetensors import safe_open

    from moviedreamer_core.renderer.sample_cache import clear_samples, load_samples, samples_path, save_samples

    path = samples_path(str(tmp_path / "r.safetensors"))
    assert path.endswith("r.safetensors.samples") and load_samples(path, fingerprint="a") is None
    written, generator = _encoded(), torch.Generator().manual_seed(5)
    torch.rand(7, generator=generator)
    save_samples(path, written, fingerprint="a", generator=generator, extra={"found": 4})
    with safe_open(path, framework="pt") as f:
        assert sorted(k for k in f.keys() if k.startswith("text.")) == ["text.0", "text.1"]
    samples, state, extra = load_samples(path, fingerprint="a")
    assert extra == {"found": 4} and torch.equal(state, generator.get_state())
    assert len(samples) == len(written)
    for got, want in zip(samples, written):
        for name in ("latents", "tokens", "text", "pooled", "identity"):
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None and b is None) or torch.equal(a, b), name
        assert got.bank is None
    assert samples[0].text is samples[2].text and samples[0].pooled is samples[4].pooled
    assert load_samples(path, fingerprint="b") is None
    clear_samples(str(tmp_path / "r.safetensors"))
    assert not os.path.exists(path)
    clear_samples(str(tmp_path / "r.safetensors"))  # nothing to remove: no error


def test_a_damaged_samples_file_is_ignored_with_a_warning(tmp_path, caplog):
    """A file cut short or missing a tensor the metadata promises: the training encodes again, it does not fail."""
    from safetensors.torch import load_file, save_file

    from moviedreamer_core.renderer.sample_cache import load_samples, save_samples

    path = str(tmp_path / "r.safetensors.samples")
    save_samples(path, _encoded(), fingerprint="a", generator=torch.Generator())
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    assert load_samples(path, fingerprint="a") is None
    save_samples(path, _encoded(), fingerprint="a", generator=torch.Generator())
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    del tensors["4.latents"]
    save_file(tensors, path, metadata=metadata)
    assert load_samples(path, fingerprint="a") is None
    assert "cannot be used" in caplog.text
