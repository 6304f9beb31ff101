"""The paper's face-embedding randomisation in renderer training: photos grouped into characters, and every
training step reading a sample's identity from ANOTHER photo of its character (plus noise), without a host."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.renderer.fit import RendererSample, fit_renderer
from moviedreamer_core.renderer.identity_banks import attach_identity_banks, character_groups

DI, D, C = 8, 4, 16


def unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_photos_are_grouped_by_name_or_by_clustering_their_faces():
    base = unit(2, DI, seed=0)
    near = F.normalize(base[0] + 0.05 * unit(DI, seed=1), dim=-1)  # the same face, another photo
    ids = [base[0], base[1], near, None]
    assert character_groups(ids, ["Eileen", "Grace", "Eileen", " Grace "]) == [0, 1, 0, 1]
    assert character_groups(ids, ["Eileen", "", "Eileen", None]) == [0, None, 0, None]
    with pytest.raises(ValueError, match="3 character names for 4 photos"):
        character_groups(ids, ["a", "b", "c"])
    # without names: clustering (photos 0 and 2 are close, 1 is far, 3 has no face)
    assert character_groups(ids, threshold=0.07) == [0, 1, 0, None]
    assert character_groups(ids, threshold=0.0) == [0, 1, 2, None], "threshold 0: every photo alone"


def test_every_sample_draws_from_the_other_photos_of_its_character():
    """Photos 0 and 1 show Eileen (two augmented variants each), photo 2 shows Grace alone, photo 3 is Eileen
    without a detectable face."""
    ids = unit(3, DI, seed=2)
    samples, photos = [], []
    for variant in range(2):
        for photo in range(4):
            identity = None if photo == 3 else F.normalize(ids[photo] + 0.01 * variant, dim=-1)
            samples.append(RendererSample(torch.zeros(4, 2, 2), torch.zeros(1, D), torch.zeros(3, C), identity))
            photos.append(photo)
    groups = character_groups([samples[p].identity for p in range(4)], ["Eileen", "Eileen", "Grace", "Eileen"])
    counts = attach_identity_banks(samples, photos, groups)
    assert counts == {"characters": 1, "banked": 6, "lent": 2}
    for s, photo in zip(samples, photos):
        if photo == 2:
            assert s.bank is None, "a character with one photo keeps its own identity (noise only)"
            continue
        others = [t.identity for t, p in zip(samples, photos) if p != photo and p in (0, 1)]
        assert s.bank.shape == (len(others), DI) and all(any(torch.equal(b, o) for o in others) for b in s.bank)
        if photo == 3:  # no face of its own: the character's identity, and a bank to draw from
            torch.testing.assert_close(s.identity, F.normalize(s.bank.mean(0), dim=-1))


def test_training_steps_read_identities_from_the_bank_not_the_photo_itself():
    """``fit_renderer`` on grouped samples: with no noise, every identity context a training step hands the
    denoiser is the projection of another photo's identity of that sample's character, never its own."""
    torch.manual_seed(0)
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": D}, context_dim=C,
                                             layer_dims=[8], context_tokens=2, identity_space={"encoder": "i", "dim": DI},
                                             identity_tokens=2))
    ids = unit(3, DI, seed=3)
    tokens = torch.eye(D)[:3, None] * 3  # a distinct token per photo: tells which sample a batch row is
    samples = [RendererSample(torch.randn(4, 2, 2), tokens[p], torch.zeros(3, C), ids[p]) for p in range(3)]
    attach_identity_banks(samples, [0, 1, 2], character_groups(list(ids), ["A", "A", "B"]))
    seen = []

    def denoise(noisy, sigmas, token_ctx, identity_ctx, text_ctx):
        if adapter.training:  # the evaluation before and after reads the samples' own identities
            seen.append((token_ctx.detach(), identity_ctx.detach()))
        return noisy + 0.0 * (token_ctx.mean() + identity_ctx.mean())  # a prediction that depends on the adapter

    fit_renderer(adapter, samples, denoise, steps=30, batch_size=3, learning_rate=0.0, identity_noise=0.0, seed=1)
    with torch.no_grad():
        token_of = [adapter.project_tokens(s.tokens[None])[0] for s in samples]
        context_of = [adapter.identity_context(i[None, None])[0] for i in ids]
    drawn = {0: set(), 1: set(), 2: set()}
    for token_ctx, identity_ctx in seen:
        for row_tokens, row_identity in zip(token_ctx, identity_ctx):
            photo = next(p for p in range(3) if torch.allclose(row_tokens, token_of[p]))
            source = next(q for q in range(3) if torch.allclose(row_identity, context_of[q], atol=1e-6))
            drawn[photo].add(source)
    assert drawn == {0: {1}, 1: {0}, 2: {2}}, drawn


def test_the_renderer_training_groups_faces_at_the_dataset_builders_distance_by_default():
    """``renderer_training_ranges`` is read by file before the pack imports (no relative imports), so its default
    grouping distance is written there again: it must stay the dataset builder's (``data.clustering``)."""
    from moviedreamer_core.data.clustering import DEFAULT_THRESHOLD
    from moviedreamer_core.renderer_training_ranges import RANGES

    assert RANGES["character_threshold"].default == DEFAULT_THRESHOLD
