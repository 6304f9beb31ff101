"""The planner's machinery: generation, cache and window, determinism, interruption, regularisers,
checkpoints, the zero-shot prior, storyboards and the training command line."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

from moviedreamer_core.planner import (
    KeyframePlanner,
    ZeroShotPrior,
    generate_storyboard,
    load_planner,
    plan_given_history,
    plan_tokens,
    preset,
    read_planner_config,
    save_planner,
)
from moviedreamer_core.planner.inputs import Story
from moviedreamer_core.planner.synthetic import SyntheticWorld, WorldConfig
from moviedreamer_core.planner.train import load_dataset, main as train_main, save_movie, write_index
from moviedreamer_core.script import load_script
from moviedreamer_core.script_encoding import TextEncoder, TokenEncoder, encode_script
from moviedreamer_core.spaces import EmbeddingSpace, SpaceMismatchError, TokenSpace
from moviedreamer_core.storyboard import Storyboard

from .test_script_encoding import ByteBagText, MeanColourFace

SPACES = dict(text_space={"encoder": "synthetic", "dim": 16}, identity_space={"encoder": "synthetic", "dim": 8},
              token_space={"source": "synthetic", "K": 2, "D": 8})


def random_model(seed=0, **overrides) -> KeyframePlanner:
    """An untrained tiny planner with large random weights (so outputs differ visibly between inputs)."""
    torch.manual_seed(seed)
    model = KeyframePlanner(preset("tiny", **{**SPACES, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.2)
    return model.eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def story() -> Story:
    return SyntheticWorld(WorldConfig(), seed=0).stories(1, seed=5)[0][0]


def long_story(n: int, seed: int = 0) -> Story:
    g = torch.Generator().manual_seed(seed)
    return Story(style=torch.randn(16, generator=g), descriptions=torch.randn(2, 16, generator=g),
                 identity_banks=[torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1) for _ in range(2)],
                 keyframe_text=torch.randn(n, 3, 16, generator=g), keyframe_characters=[(i % 2,) for i in range(n)])


# ------------------------------------------------------------------------------------------- generation


def test_cached_decoding_equals_full_recomputation(story):
    model = random_model()
    cached = plan_tokens(model, story, seed=3, temperature=1.0, guidance=2.0, window=None, use_cache=True)
    full = plan_tokens(model, story, seed=3, temperature=1.0, guidance=2.0, window=None, use_cache=False)
    assert cached.shape == (story.n_keyframes, 2, 8)
    assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()


def test_window_rebuild_equals_recomputing_the_same_context():
    """After a slide the cache is rebuilt as header + last W keyframes: identical to decoding without a cache
    over the same windowed contexts."""
    # 13 keyframes fed back through a planner of large random weights amplify float rounding geometrically (the
    # cached and the full pass round differently); this planner keeps it under 1e-4, while the same seed with the
    # mention projection's weights drawn too (its default inputs) ends at 2e-2 with the same code paths: the story
    # names nobody, so the projection is never used. Checked: the cached pass's positions off by one from the
    # fourth keyframe on gives differences of order 1 (0.4 to 6) from that keyframe on.
    model, s = random_model(1, inputs=["camera"]), long_story(13)
    cached = plan_tokens(model, s, seed=0, temperature=0.7, window=3, use_cache=True)
    full = plan_tokens(model, s, seed=0, temperature=0.7, window=3, use_cache=False)
    assert torch.allclose(cached, full, atol=1e-4)
    unwindowed = plan_tokens(model, s, seed=0, temperature=0.7, window=None)
    assert torch.allclose(cached[:6], unwindowed[:6], atol=1e-4)  # identical until the first slide
    assert not torch.allclose(cached[6:], unwindowed[6:], atol=1e-3)


def test_same_seed_is_bit_identical_other_seed_differs(story):
    model = random_model()
    a = plan_tokens(model, story, seed=11, temperature=1.0, guidance=1.5)
    b = plan_tokens(model, story, seed=11, temperature=1.0, guidance=1.5)
    c = plan_tokens(model, story, seed=12, temperature=1.0, guidance=1.5)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    z1 = plan_tokens(model, story, seed=1, temperature=0.0)
    z2 = plan_tokens(model, story, seed=2, temperature=0.0)
    assert torch.equal(z1, z2), "temperature 0 is deterministic whatever the seed"


def test_window_keeps_the_work_per_keyframe_flat():
    """200 keyframes with window W=4: the context never exceeds header + 2W keyframes, and the elements run
    through the transformer per keyframe (rebuilds included) average about 2 keyframes' worth plus header/W,
    the same late in the story as early on. Without a window the context grows with the story."""
    model, s, W = random_model(num_layers=1), long_story(200), 4
    header, per_keyframe = 1 + 2 * 2, 3 + 1 + 1 + 2  # style + 2 x (description, identity); text, identity, BOI, K
    stats = {}
    plan_tokens(model, s, seed=0, temperature=0.5, window=W, stats=stats)
    processed, context = stats["processed"], stats["context"]
    assert len(processed) == 200
    assert max(context) <= header + 2 * W * per_keyframe
    assert max(processed) <= header + (W + 1) * per_keyframe  # a rebuild: header + W keyframes + the new one
    # Per W keyframes: W new keyframes plus one rebuild of header + W keyframes, less the previous keyframe's
    # last token, which is then fed inside the rebuilt window instead of on its own.
    early, late = sum(processed[2 * W:2 * W + 96]) / 96, sum(processed[-96:]) / 96
    assert early == late == 2 * per_keyframe + (header - 1) / W, (early, late)

    full = {}
    plan_tokens(model, s.window(0, 60), seed=0, temperature=0.5, window=None, stats=full)
    assert full["context"][-1] >= header + 59 * per_keyframe and max(full["processed"][1:]) == per_keyframe


def test_progress_is_reported_and_an_exception_stops_within_one_keyframe(story):
    model = random_model()
    calls = []

    class Cancelled(Exception):
        pass

    def progress(done, total):
        calls.append((done, total))
        if done == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        plan_tokens(model, story, seed=0, progress=progress)
    assert calls == [(1, story.n_keyframes), (2, story.n_keyframes)]


# ------------------------------------------------------------------------------------------------ batching


def test_batching_stories_of_different_lengths_changes_nothing():
    """Padding and the attention mask make a batch the token-weighted mean of its stories' own losses."""
    model = random_model(2)
    world = SyntheticWorld(WorldConfig(), seed=0)
    a, b = [s for s, _ in world.stories(2, seed=3)]
    b = b.window(0, b.n_keyframes - 2) if b.n_keyframes == a.n_keyframes else b
    assert a.n_keyframes != b.n_keyframes
    together, alone = model.loss([a, b]), [model.loss([a]), model.loss([b])]
    n = torch.tensor([float(a.tokens[..., 0].numel()), float(b.tokens[..., 0].numel())])
    for term in ("loss", "nll", "l2", "cosine"):
        expected = (n[0] * alone[0][term] + n[1] * alone[1][term]) / n.sum()
        assert torch.allclose(together[term], expected, rtol=1e-4, atol=1e-5), term


def test_training_story_from_script_embeds(embeds):
    from moviedreamer_core.planner import story_from_embeds

    tokens = torch.randn(3, 1, 6)
    s = story_from_embeds(embeds, tokens=tokens)
    assert torch.equal(s.tokens, tokens) and s.keyframe_characters == [tuple(k.characters) for k in embeds.keyframes]
    assert len(s.reference_tokens) == 2 and s.identity_banks[0].shape[1] == 12
    with pytest.raises(ValueError, match=r"tokens must be \[3, K, D\]"):
        story_from_embeds(embeds, tokens=torch.randn(2, 1, 6))


# ------------------------------------------------------------------------------------------ regularisers


def test_regularisers_act_in_training_only(story):
    model = random_model(dropout=0.5, history_mask_ratio=0.5, condition_dropout=0.0)
    s = dataclasses.replace(story, tokens=torch.randn(story.n_keyframes, 2, 8))
    model.eval()
    e1, e2 = model.loss([s]), model.loss([s])
    assert torch.equal(e1["loss"], e2["loss"]), "evaluation is deterministic"
    model.train()
    torch.manual_seed(0)
    t1 = model.loss([s])
    t2 = model.loss([s])
    assert not torch.equal(t1["loss"], t2["loss"]), "dropout and masking make training passes differ"


def test_each_regulariser_is_switchable(story):
    base = dict(dropout=0.0, history_mask_ratio=0.0, history_noise=0.0, scheduled_sampling=0.0, condition_dropout=0.0,
                identity_randomisation=False, slot_permutation=False, text_noise=0.0)
    s = dataclasses.replace(story, tokens=torch.randn(story.n_keyframes, 2, 8))
    model = random_model(**base).train()
    assert torch.equal(model.loss([s])["loss"], model.loss([s])["loss"]), "all off: training pass is deterministic"
    for name, value in [("dropout", 0.5), ("history_mask_ratio", 0.5), ("history_noise", 0.3), ("scheduled_sampling", 0.5),
                        ("condition_dropout", 0.5), ("text_noise", 0.5),
                        ("identity_randomisation", True), ("slot_permutation", True)]:
        model = random_model(**{**base, name: value}).train()
        losses = {float(model.loss([s])["loss"].detach()) for _ in range(6)}
        assert len(losses) > 1, f"{name} has no effect in training"
        model.eval()
        assert len({float(model.loss([s])["loss"].detach()) for _ in range(3)}) == 1, f"{name} acts in evaluation"


def test_scheduled_sampling_feeds_the_planners_own_predictions_as_history(story):
    """With ``scheduled_sampling=1`` every keyframe's token inputs are the planner's own teacher-forced predictions
    (the most likely component's mean, as generation plans at temperature 0) while the targets stay the true tokens;
    at 0 the loss is the teacher-forced one."""
    base = dict(dropout=0.0, history_mask_ratio=0.0, condition_dropout=0.0, identity_randomisation=False,
                slot_permutation=False)
    s = dataclasses.replace(story, tokens=torch.randn(story.n_keyframes, 2, 8))
    model = random_model(**base, scheduled_sampling=1.0).train()
    ctx = model.make_conditioning(s, train=True)
    seq, pred, targets = model.build_sequence(s, ctx)
    with torch.no_grad():
        own = model.head(model.run_backbone(seq[None])[0, pred]).sample(0.0, torch.Generator())
        fed, fed_pred, fed_targets = model.build_sequence(s, ctx, own.reshape(s.n_keyframes, 2, 8))
        expected = model.head(model.run_backbone(fed[None])[0, fed_pred])
        loss = model.loss([s])
    assert torch.equal(fed_targets, targets), "targets stay the true tokens"
    assert not torch.allclose(fed, seq), "the token inputs are the predictions"
    assert torch.allclose(loss["nll"], expected.nll(targets).mean(), atol=1e-5)
    teacher = random_model(**base, scheduled_sampling=0.0).train()
    with torch.no_grad():
        tf = teacher.head(teacher.run_backbone(seq[None])[0, pred])
        assert torch.allclose(teacher.loss([s])["nll"], tf.nll(targets).mean(), atol=1e-5)
        assert not torch.allclose(loss["nll"], teacher.loss([s])["nll"])


def test_plan_given_history_predicts_each_keyframe_from_the_true_ones_before_it(story):
    """Token 0 of keyframe i is the teacher-forced prediction from the true tokens of keyframes 0..i-1; token 1 reads
    the planned token 0 (the teacher-forced pass with that one input replaced); keyframe 0 is the free-running plan's,
    later keyframes are not (the free-running plan reads its own keyframes)."""
    model = random_model()
    N, K, D = story.n_keyframes, 2, 8
    s = dataclasses.replace(story, tokens=torch.randn(N, K, D))
    got = model.normalise(plan_given_history(model, s))
    assert got.shape == (N, K, D) and not model.training
    ctx = model.make_conditioning(s, train=False)
    seq, pred, targets = model.build_sequence(s, ctx)
    with torch.no_grad():
        forced = model.head(model.run_backbone(seq[None])[0, pred]).sample(0.0, torch.Generator()).reshape(N, K, D)
        assert torch.allclose(got[:, 0], forced[:, 0], atol=1e-5)
        for i in range(N):
            inputs = targets.reshape(N, K, D).clone()
            inputs[i, 0] = got[i, 0]
            seq_i, pred_i, _ = model.build_sequence(s, ctx, inputs)
            token_1 = model.head(model.run_backbone(seq_i[None])[0, pred_i[i * K + 1]][None]).sample(0.0, torch.Generator())
            assert torch.allclose(got[i, 1], token_1[0], atol=1e-5)
    free = model.normalise(plan_tokens(model, s, seed=0, temperature=0.0))
    assert torch.allclose(free[0], got[0], atol=1e-5)
    assert not torch.allclose(free[1:], got[1:], atol=1e-3)
    with pytest.raises(ValueError, match="true tokens"):
        plan_given_history(model, dataclasses.replace(story, tokens=None))


def test_identity_randomisation_draws_other_photos(story):
    model = random_model(identity_randomisation=True, identity_noise=0.05)
    ctx = model.make_conditioning(story, train=True, generator=torch.Generator().manual_seed(0))
    bank = story.identity_banks[0]
    draws = torch.stack([ctx.identity(0) for _ in range(20)])
    nearest = (draws @ bank.T).argmax(1)
    assert len(set(nearest.tolist())) > 1, "draws come from different photos of the character"
    assert torch.allclose(draws.norm(dim=1), torch.ones(20), atol=1e-5)
    mean = model.make_conditioning(story, train=False).identity(0)
    assert torch.allclose(mean, torch.nn.functional.normalize(bank.mean(0), dim=0))


@pytest.mark.parametrize("cond", [True, False])
def test_training_sequence_is_the_row_by_row_sequence_with_the_same_draws(story, cond):
    """``build_sequence`` (batched) puts the same rows in the same places as the row-by-row assembly, and
    takes the same draws from the story's generator (text noise, identity photos and noise, history noise and masks), with
    keyframes nobody is in and a character without identity photos."""
    model = random_model(history_mask_ratio=0.5, history_noise=0.3, identity_randomisation=True, slot_permutation=True,
                         text_noise=0.5).train()
    banks = list(story.identity_banks)
    banks[1] = banks[1][:0]  # no photos: the learned no-identity vector
    chars = [(), *story.keyframe_characters[1:]]
    cameras = torch.arange(story.n_keyframes) % 4 - 1  # the camera input too, with keyframes that state none (-1)
    width = max(len(c) for c in chars)  # and mentions, with characters the action does not name
    present = torch.rand(story.n_keyframes, width, generator=torch.Generator().manual_seed(4)) < 0.6
    s = dataclasses.replace(story, identity_banks=banks, keyframe_characters=chars,
                            tokens=torch.randn(story.n_keyframes, 2, 8), keyframe_camera=cameras,
                            keyframe_mentions=torch.randn(story.n_keyframes, width, 16), mention_present=present)
    assert model.camera_emb is not None and model.mention_in is not None
    said = {bool(present[i, p]) for i, c in enumerate(chars) for p in range(len(c))}
    assert said == {True, False}, "some on-screen characters are named, some are not"
    assert any(1 in c for c in chars) and any(len(c) > 1 for c in chars)
    own = torch.randn(s.n_keyframes, 2, 8)  # token inputs other than the targets (scheduled sampling's)
    for inputs in (None, own):
        built = []
        for build in (model.build_sequence, model.build_sequence_row_by_row):
            gen = torch.Generator().manual_seed(3)
            ctx = model.make_conditioning(s, train=True, cond=cond, generator=gen)
            ctx.generator = gen
            built.append(build(s, ctx, inputs) + (torch.rand(4, generator=gen),))
        (seq, predict, targets, after), (ref, ref_predict, ref_targets, ref_after) = built
        assert seq.shape == ref.shape and torch.allclose(seq, ref, atol=1e-5)
        assert predict.tolist() == ref_predict.tolist() and torch.equal(targets, ref_targets)
        assert torch.equal(after, ref_after), "the generator was drawn from exactly as often"
        if inputs is None:
            from_targets = seq
    assert not torch.allclose(seq, from_targets, atol=1e-3), "the token inputs were read"
    masked = torch.isclose(seq, model.type_emb.weight[6] + model.mask_embedding + model.token_pos.weight[0], atol=1e-5).all(1)
    assert masked.any(), "history masking acted"


# ---------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_exact(tmp_path, story):
    model = random_model()
    model.set_token_stats(torch.randn(50, 8) * 3 + 1)
    path = tmp_path / "p.safetensors"
    save_planner(model, str(path), extra={"steps": 1})
    loaded = load_planner(str(path))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert loaded.cfg == model.cfg
    assert torch.equal(plan_tokens(model, story, seed=4), plan_tokens(loaded, story, seed=4))
    assert read_planner_config(str(path)).token_space == SPACES["token_space"]


def test_checkpoint_refuses_a_space_mismatch_naming_both_sides(tmp_path):
    path = tmp_path / "story_v2.safetensors"
    save_planner(random_model(), str(path))
    with pytest.raises(SpaceMismatchError) as err:
        load_planner(str(path), expect_text_space=EmbeddingSpace("comfy.SD1ClipModel.pooled", 768))
    msg = str(err.value)
    assert "story_v2.safetensors expects synthetic (16-D)" in msg and "comfy.SD1ClipModel.pooled (768-D)" in msg
    with pytest.raises(SpaceMismatchError, match=r"token space mismatch.*synthetic \(K=2, D=8\).*clip_vision.image_embeds \(K=1, D=1024\)"):
        load_planner(str(path), expect_token_space=TokenSpace("clip_vision.image_embeds", 1, 1024))


def _rewrite_config(src, dst, edit):
    """A copy of planner file ``src`` at ``dst`` whose config metadata went through ``edit(dict)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["moviedreamer_planner"])
    edit(cfg)
    meta["moviedreamer_planner"] = json.dumps(cfg)
    save_file(tensors, str(dst), metadata=meta)


def test_a_planner_file_from_before_declared_inputs_loads_reading_no_camera(tmp_path, story):
    """A file whose config has no ``inputs`` (every planner written before the camera input) loads as it was
    trained: no camera embedding, and the camera of the story changes nothing."""
    old = random_model(inputs=[])
    path = tmp_path / "old.safetensors"
    save_planner(old, str(path))
    legacy = tmp_path / "legacy.safetensors"
    _rewrite_config(path, legacy, lambda cfg: cfg.pop("inputs"))
    assert read_planner_config(str(legacy)).inputs == []
    loaded = load_planner(str(legacy))
    assert loaded.camera_emb is None and not loaded.cfg.reads("camera")
    assert "camera_emb.weight" not in loaded.state_dict()
    cams = [torch.zeros(story.n_keyframes, dtype=torch.long), torch.full((story.n_keyframes,), 5, dtype=torch.long)]
    plans = [plan_tokens(loaded, dataclasses.replace(story, keyframe_camera=c), seed=2) for c in cams]
    assert torch.equal(plans[0], plans[1]) and torch.equal(plans[0], plan_tokens(old, story, seed=2))


def test_a_planner_file_declaring_an_unknown_input_is_refused_naming_file_and_input(tmp_path):
    path = tmp_path / "p.safetensors"
    save_planner(random_model(), str(path))
    future = tmp_path / "future_planner.safetensors"
    _rewrite_config(path, future, lambda cfg: cfg.update(inputs=["camera", "lens_mm"]))
    for call in (read_planner_config, load_planner):
        with pytest.raises(ValueError, match=r"future_planner\.safetensors.*'lens_mm'"):
            call(str(future))


def test_new_planners_read_the_camera_and_it_changes_the_prediction(tmp_path, story):
    """A planner declares the camera (saved in its file); the shot's camera changes its prediction, in both the
    batched training sequence and generation, and a dropped script (CFG's unconditional stream) ignores it."""
    model = random_model()
    assert model.cfg.inputs == ["camera", "mentions"] and model.camera_emb is not None
    path = tmp_path / "p.safetensors"
    save_planner(model, str(path))
    assert read_planner_config(str(path)).inputs == ["camera", "mentions"]
    n = story.n_keyframes
    wide = dataclasses.replace(story, keyframe_camera=torch.full((n,), 1, dtype=torch.long))
    close = dataclasses.replace(story, keyframe_camera=torch.full((n,), 5, dtype=torch.long))
    assert not torch.allclose(plan_tokens(model, wide, seed=1), plan_tokens(model, close, seed=1))
    assert torch.equal(plan_tokens(model, wide, seed=1), plan_tokens(load_planner(str(path)), wide, seed=1))
    tokens = torch.randn(n, 2, 8)
    seqs = {}
    for cond in (True, False):
        for name, s in (("wide", wide), ("close", close)):
            s = dataclasses.replace(s, tokens=tokens)
            seqs[cond, name] = model.build_sequence(s, model.make_conditioning(s, train=False, cond=cond))[0]
    assert not torch.allclose(seqs[True, "wide"], seqs[True, "close"])
    assert torch.equal(seqs[False, "wide"], seqs[False, "close"])


def _with_mentions(story, seed=0):
    """``story`` with a random mention for every on-screen character, and which of them are present."""
    g = torch.Generator().manual_seed(seed)
    width = max(len(c) for c in story.keyframe_characters)
    present = torch.zeros(story.n_keyframes, width, dtype=torch.bool)
    for i, cast in enumerate(story.keyframe_characters):
        present[i, :len(cast)] = True
    return dataclasses.replace(story, keyframe_mentions=torch.randn(story.n_keyframes, width, 16, generator=g),
                               mention_present=present)


def test_new_planners_read_mentions_and_they_change_the_prediction(tmp_path, story):
    """What the action says of a character changes the plan (generation and the batched training sequence); an
    absent mention is the same as a story without mentions; a dropped script (CFG's unconditional stream) and a
    planner whose file declares only the camera (the release before mentions) ignore them."""
    model = random_model()
    said, other = _with_mentions(story, 1), _with_mentions(story, 2)
    assert not torch.allclose(plan_tokens(model, said, seed=1), plan_tokens(model, other, seed=1))
    silent = dataclasses.replace(said, mention_present=torch.zeros_like(said.mention_present))
    assert torch.equal(plan_tokens(model, silent, seed=1), plan_tokens(model, story, seed=1))
    tokens = torch.randn(story.n_keyframes, 2, 8)
    seqs = {}
    for cond in (True, False):
        for name, s in (("said", said), ("other", other), ("none", story)):
            s = dataclasses.replace(s, tokens=tokens)
            seqs[cond, name] = model.build_sequence(s, model.make_conditioning(s, train=False, cond=cond))[0]
    assert not torch.allclose(seqs[True, "said"], seqs[True, "other"])
    assert torch.equal(seqs[False, "said"], seqs[False, "other"]) and torch.equal(seqs[False, "said"], seqs[False, "none"])

    camera_only = random_model(inputs=["camera"])
    assert camera_only.mention_in is None and not any(k.startswith("mention_in") for k in camera_only.state_dict())
    path = tmp_path / "camera_only.safetensors"
    save_planner(camera_only, str(path))
    loaded = load_planner(str(path))
    assert loaded.mention_in is None
    assert torch.equal(plan_tokens(loaded, said, seed=1), plan_tokens(loaded, story, seed=1))


def test_script_mentions_reach_the_story(embeds):
    """Each keyframe's on-screen characters get the embedding of what its action says of them (lighthouse.yaml:
    "Bo turns to the door." names Bo, not Ava; "Ava hands Bo a lantern." names both), in cast order."""
    from moviedreamer_core.planner.inputs import story_from_embeds
    from moviedreamer_core.script.mentions import NEUTRAL

    text = ByteBagText(16)
    s = story_from_embeds(embeds)
    casts = [tuple(k.characters) for k in embeds.keyframes]
    actions = [k.action for k in embeds.keyframes]
    assert actions[1:] == ["Bo turns to the door.", "Ava hands Bo a lantern."] and casts[1:] == [(0, 1), (0, 1)]
    assert s.mention_present.tolist() == [[True, False], [False, True], [True, True]]
    want = text([f"{NEUTRAL} climbs the spiral staircase.", f"{NEUTRAL} turns to the door.", f"{NEUTRAL} hands",
                 f"{NEUTRAL} a lantern."])
    got = torch.stack([s.mention(0, 0), s.mention(1, 1), s.mention(2, 0), s.mention(2, 1)])
    assert torch.allclose(got, want, atol=1e-5)
    assert s.mention(1, 0) is None and s.mention(0, 1) is None
    w = s.window(1, 3)
    assert torch.equal(w.keyframe_mentions, s.keyframe_mentions[1:3]) and torch.equal(w.mention_present, s.mention_present[1:3])
    cut = story_from_embeds(embeds.keyframe_window(1, 3))  # the embeddings cut the same way the story is
    assert cut.keyframe_characters == w.keyframe_characters and torch.equal(cut.keyframe_text, w.keyframe_text)
    assert torch.equal(cut.keyframe_mentions, w.keyframe_mentions) and torch.equal(cut.mention_present, w.mention_present)
    assert torch.equal(cut.keyframe_camera, w.keyframe_camera) and cut.n_characters == s.n_characters


def test_mentions_survive_the_dataset_format(tmp_path, story):
    from moviedreamer_core.planner.train import load_movie

    s = dataclasses.replace(_with_mentions(story), tokens=torch.randn(story.n_keyframes, 2, 8))
    s.mention_present[0, 0] = False
    save_movie(str(tmp_path / "m.safetensors"), s, SPACES)
    back, _ = load_movie(str(tmp_path / "m.safetensors"))
    assert torch.equal(back.keyframe_mentions, s.keyframe_mentions) and torch.equal(back.mention_present, s.mention_present)
    save_movie(str(tmp_path / "plain.safetensors"), dataclasses.replace(s, keyframe_mentions=None, mention_present=None), SPACES)
    plain, _ = load_movie(str(tmp_path / "plain.safetensors"))
    assert plain.keyframe_mentions is None and plain.mention_present is None


def test_script_cameras_reach_the_story(embeds):
    from moviedreamer_core.planner.inputs import CAMERAS, story_from_embeds

    s = story_from_embeds(embeds)
    assert s.keyframe_camera.tolist() == [CAMERAS.index(k.camera) for k in embeds.keyframes]
    assert s.window(1, 3).keyframe_camera.tolist() == s.keyframe_camera[1:3].tolist()


def test_camera_rows_are_frozen_and_cover_the_script_schema():
    """Saved planners' camera embedding rows follow ``CAMERAS``' order: a camera the script schema adds must be
    appended there, never inserted (the shipped toy planner reads wide, medium and close_up at rows 2, 4 and 6)."""
    from moviedreamer_core.planner.inputs import CAMERAS, camera_index
    from moviedreamer_core.script.schema import Camera

    assert set(CAMERAS) == {c.value for c in Camera} and len(set(CAMERAS)) == len(CAMERAS)
    assert [camera_index(c) for c in ("wide", "medium", "close_up")] == [1, 3, 5]
    assert camera_index(Camera.aerial) == len(CAMERAS) - 1 and camera_index(None) == camera_index("dolly") == -1


def test_a_camera_no_training_film_stated_is_planned_as_the_nearest_one_they_did(tmp_path, story):
    """The toy films state only wide, medium and close-up shots: the other seven camera rows never trained, and a
    script's ``extreme_wide``, ``full`` or ``medium_close_up`` planned ghosted frames through them (found by an
    audit). The trainer records the values its films state (``PlannerConfig.cameras``) and says so; the planner reads
    any other value at the nearest of them; a file without the field reads every value at its own row."""
    from moviedreamer_core.planner.inputs import CAMERAS, cameras_planned_as, nearest_camera
    from moviedreamer_core.planner.train import learnable_inputs, story_inputs

    assert {c: nearest_camera(c, ["wide", "medium", "close_up"]) for c in CAMERAS} == {
        "extreme_wide": "wide", "wide": "wide", "full": "wide", "medium": "medium", "medium_close_up": "close_up",
        "close_up": "close_up", "extreme_close_up": "close_up", "over_the_shoulder": "medium",
        "point_of_view": "medium", "aerial": "wide"}
    assert nearest_camera("aerial", []) == "aerial" and nearest_camera("full", ["close_up"]) == "close_up"
    n = story.n_keyframes
    shown = [dataclasses.replace(story, keyframe_camera=torch.tensor([(1, 3, 5)[i % 3] for i in range(n)])),
             dataclasses.replace(story, keyframe_camera=torch.full((n,), -1))]
    kept, dropped, cameras = learnable_inputs(["camera", "mentions"], (story_inputs(s) for s in shown))
    assert kept == ["camera"] and dropped == ["mentions"] and cameras == ["wide", "medium", "close_up"]
    every = dataclasses.replace(long_story(len(CAMERAS)), keyframe_camera=torch.arange(len(CAMERAS)))
    assert learnable_inputs(["camera"], [story_inputs(every)])[2] == [], "every value stated: nothing to record"
    assert cameras_planned_as(["full", None, "wide", "full", "aerial"], cameras) == {"full": "wide", "aerial": "wide"}
    from moviedreamer_core.script.schema import Camera

    assert cameras_planned_as([Camera.point_of_view, Camera.wide], cameras) == {"point_of_view": "medium"}

    model = random_model()
    model.cfg.cameras = cameras
    path = tmp_path / "p.safetensors"
    save_planner(model, str(path))
    loaded = load_planner(str(path))
    assert loaded.cfg.cameras == cameras
    full = dataclasses.replace(story, keyframe_camera=torch.full((n,), CAMERAS.index("full")))
    wide = dataclasses.replace(story, keyframe_camera=torch.full((n,), CAMERAS.index("wide")))
    assert torch.equal(plan_tokens(loaded, full, seed=1), plan_tokens(loaded, wide, seed=1))
    model.cfg.cameras = []
    save_planner(model, str(path))
    every_row = load_planner(str(path))
    assert not torch.allclose(plan_tokens(every_row, full, seed=1), plan_tokens(every_row, wide, seed=1))


def test_the_shipped_toy_planner_knows_the_toy_cameras_only():
    from moviedreamer_core.planner.checkpoint import read_planner_config

    path = Path(__file__).resolve().parents[2] / "moviedreamer_core/toycinema/weights/moviedreamer/toycinema_planner.safetensors"
    assert read_planner_config(str(path)).cameras == ["wide", "medium", "close_up"]


def test_a_file_that_is_not_a_planner_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a MovieDreamer planner file"):
        load_planner(str(path))


# ------------------------------------------------------------------------------ script embeds -> storyboard

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def embeds(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "input"
    root.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(40, 255, (40, 40, 3), dtype=np.uint8)).save(root / "ava.png")
    script = load_script((FIXTURES / "lighthouse.yaml").read_text(), input_dir=str(root), image_count=1)
    batch = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1

    def tokens(images):  # a real deterministic "CLIP": channel means through a fixed projection, K=1, D=6
        proj = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
        return torch.stack([torch.from_numpy(im.reshape(-1, 3).mean(0).astype("float32")) / 255 @ proj for im in images])[:, None]

    return encode_script(script, TextEncoder(ByteBagText(16), EmbeddingSpace("bytes", 16)), MeanColourFace(),
                         input_dir=str(root), batch=batch,
                         token_encoder=TokenEncoder(tokens, TokenSpace("clip_vision.image_embeds", 1, 6)))


def test_generate_storyboard_checks_spaces_and_records_lineage(embeds):
    wrong = random_model()
    with pytest.raises(SpaceMismatchError, match="text space mismatch"):
        generate_storyboard(wrong, embeds, seed=0)
    model = random_model(text_space={"encoder": "bytes", "dim": 16}, identity_space={"encoder": "test_mean_colour", "dim": 12},
                         token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 6})
    board = generate_storyboard(model, embeds, seed=7, temperature=0.5, guidance=2.0, window=8)
    assert board.tokens.shape == (3, 1, 6)
    assert board.shot_ids == ("s1", "s2", "s2") and board.keyframe_shot == (0, 1, 1)
    assert board.script_hash == embeds.script_hash and board.content_hash == embeds.content_hash
    assert board.seed == 7 and len(set(board.keyframe_seeds)) == 3
    assert board.params == {"temperature": 0.5, "guidance": 2.0, "window": 8}
    assert board.planner_name == "moviedreamer-planner"


def test_few_shot_references_enter_the_header(embeds):
    """Each character's reference tokens are in-context examples in the header (r * K elements with its slot)."""
    from moviedreamer_core.planner import story_from_embeds

    model = random_model(text_space={"encoder": "bytes", "dim": 16}, identity_space={"encoder": "test_mean_colour", "dim": 12},
                         token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 6})
    with_refs = story_from_embeds(embeds)
    without = story_from_embeds(embeds, [None, None])
    ctx = model.make_conditioning(with_refs, train=False)
    n_refs = sum(r.shape[0] for r in with_refs.reference_tokens)
    assert n_refs >= 2
    assert model.embed_header(with_refs, ctx).shape[0] == 1 + 2 * 2 + n_refs
    assert model.embed_header(without, ctx).shape[0] == 1 + 2 * 2
    a = generate_storyboard(model, embeds, seed=1, temperature=0)
    b = generate_storyboard(model, embeds, seed=1, temperature=0, reference_tokens=[None, None])
    assert not torch.allclose(a.tokens, b.tokens, atol=1e-4), "the references are read"
    shifted = [r + 1.0 for r in with_refs.reference_tokens]
    c = generate_storyboard(model, embeds, seed=1, temperature=0, reference_tokens=shifted)
    assert not torch.allclose(a.tokens, c.tokens, atol=1e-4), "explicit references replace ScriptEncode's"
    with pytest.raises(SpaceMismatchError, match=r"reference tokens of Bo have shape \(1, 2, 6\)"):
        generate_storyboard(model, embeds, seed=1, reference_tokens=[with_refs.reference_tokens[0], torch.zeros(1, 2, 6)])


def test_zero_shot_prior_follows_its_rules(embeds):
    board = generate_storyboard(ZeroShotPrior(), embeds, seed=0, temperature=0.0)
    assert board.planner_name == "zero_shot_prior"
    assert board.token_space == TokenSpace("clip_vision.image_embeds", 1, 6)
    ava = embeds.characters[0].reference_tokens.mean(0)
    bo = embeds.characters[1].reference_tokens.mean(0)
    t = board.tokens
    assert torch.allclose(t[0], ava, atol=1e-5), "first keyframe: the cast (Ava alone)"
    cast = ZeroShotPrior._blend([(1.0, ava), (1.0, bo)])
    expected = ZeroShotPrior._blend([(0.35, t[0]), (0.65, cast)])  # new shot, shared cast (Ava)
    assert torch.allclose(t[1], expected, atol=1e-5)
    expected = ZeroShotPrior._blend([(0.7, t[1]), (0.3, cast)])  # same shot
    assert torch.allclose(t[2], expected, atol=1e-5)
    noisy = generate_storyboard(ZeroShotPrior(), embeds, seed=0, temperature=1.0)
    again = generate_storyboard(ZeroShotPrior(), embeds, seed=0, temperature=1.0)
    assert torch.equal(noisy.tokens, again.tokens) and not torch.equal(noisy.tokens, board.tokens)


def test_zero_shot_prior_names_characters_without_reference_tokens(embeds):
    refs = [embeds.characters[0].reference_tokens, None]
    with pytest.raises(ValueError, match="missing for: Bo"):
        generate_storyboard(ZeroShotPrior(), embeds, seed=0, reference_tokens=refs)


def test_storyboard_save_and_load(tmp_path, embeds):
    board = generate_storyboard(ZeroShotPrior(), embeds, seed=2**64 - 1, temperature=0.3)
    path = tmp_path / "board.safetensors"
    board.to_safetensors(str(path))
    again = Storyboard.from_safetensors(str(path))
    assert torch.equal(again.tokens, board.tokens) and again.tokens.dtype == torch.float32
    assert dataclasses.replace(again, tokens=board.tokens) == board
    assert again.seeds == {"base": 2**64 - 1, "keyframes": list(board.keyframe_seeds)}
    assert not (tmp_path / "board.safetensors.tmp").exists()


def test_storyboard_keeps_the_black_image_tokens_of_its_encoder(tmp_path, embeds):
    """``null_tokens`` (the token encoder's black image, read by IP-Adapter plus on the unconditional pass) survive
    a save and load; a storyboard without them loads without them; a wrong shape is refused."""
    board = generate_storyboard(ZeroShotPrior(), embeds, seed=0)
    null = torch.randn(1, 1, board.token_space.D)
    with_null = dataclasses.replace(board, null_tokens=null)
    with_null.to_safetensors(str(tmp_path / "n.safetensors"))
    assert torch.equal(Storyboard.from_safetensors(str(tmp_path / "n.safetensors")).null_tokens, null)
    board.to_safetensors(str(tmp_path / "plain.safetensors"))
    assert Storyboard.from_safetensors(str(tmp_path / "plain.safetensors")).null_tokens is None
    with pytest.raises(ValueError, match=r"null tokens \(1, 1, 5\) do not fit"):
        dataclasses.replace(board, null_tokens=torch.zeros(1, 1, 5))


def test_storyboard_refuses_inconsistent_fields_and_foreign_files(tmp_path, embeds):
    from safetensors.torch import save_file

    board = generate_storyboard(ZeroShotPrior(), embeds, seed=0)
    with pytest.raises(ValueError, match="shot_ids has 2 entries for 3 keyframes"):
        dataclasses.replace(board, shot_ids=board.shot_ids[:2])
    with pytest.raises(ValueError, match=r"do not fit clip_vision.image_embeds \(K=1, D=6\)"):
        dataclasses.replace(board, tokens=torch.zeros(3, 1, 5))
    save_file({"tokens": torch.zeros(3, 1, 6)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="x.safetensors is not a MovieDreamer storyboard"):
        Storyboard.from_safetensors(str(tmp_path / "x.safetensors"))


# ---------------------------------------------------------------------------------------- training CLI


def test_training_cli_writes_a_loadable_planner(tmp_path):
    world = SyntheticWorld(WorldConfig(), seed=0)
    movies = []
    for i, (s, _) in enumerate(world.stories(6, seed=9)):
        name = f"movies/{i:04d}.safetensors"
        save_movie(str(tmp_path / "data" / name), s, SPACES)
        movies.append(name)
    write_index(str(tmp_path / "data"), movies, SPACES)
    stories, spaces = load_dataset(str(tmp_path / "data"))
    assert len(stories) == 6 and spaces == SPACES
    original = world.stories(6, seed=9)[2][0]
    assert torch.equal(stories[2].tokens, original.tokens)
    assert stories[2].keyframe_characters == [tuple(c) for c in original.keyframe_characters]
    out = tmp_path / "planner.safetensors"
    assert train_main(["--data", str(tmp_path / "data"), "--out", str(out), "--steps", "3", "--batch-size", "2"]) == 0
    model = load_planner(str(out), expect_text_space=EmbeddingSpace("synthetic", 16))
    assert plan_tokens(model, stories[0], seed=0).shape == stories[0].tokens.shape
    meta = json.loads(json.dumps(read_planner_config(str(out)).to_dict()))
    assert meta["token_space"] == SPACES["token_space"]


def test_backbone_starts_from_a_local_llama_checkpoint(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    llama.save_pretrained(str(tmp_path / "llama"), safe_serialization=True)
    model = KeyframePlanner.from_pretrained_llama(str(tmp_path / "llama"), **SPACES)
    assert model.cfg.hidden_size == 32 and model.cfg.num_kv_heads == 2
    ours = model.backbone.state_dict()
    for key, value in llama.model.state_dict().items():
        if not key.startswith("embed_tokens"):
            assert torch.equal(ours[key], value), key
    story = long_story(3)
    assert plan_tokens(model.eval(), story, seed=0).shape == (3, 2, 8)


@pytest.mark.parametrize("field,value", [("hidden_size", 0), ("num_layers", -1), ("mixture_components", 2.5),
                                         ("num_heads", True), ("dropout", 1.5), ("history_mask_ratio", -0.1),
                                         ("text_noise", float("nan")), ("min_sigma", 0.0), ("num_heads", 5)])
def test_a_planner_config_with_an_impossible_number_is_refused_by_the_fields_name(field, value):
    """A bad size or share (a typed override, a hand-edited planner file) is refused when the config is made, naming
    the field, not deep inside torch (``planner.hidden_size=-1`` was a RuntimeError about a negative dimension)."""
    from moviedreamer_core.planner.config import PlannerConfig, preset

    with pytest.raises(ValueError, match=field):
        preset("tiny", **{field: value})
    for name in ("tiny", "small", "paper"):
        preset(name)  # every preset passes
    PlannerConfig()  # and the defaults


@pytest.mark.parametrize("change, message", [
    (lambda c: "[1]", r"its configuration \('moviedreamer_planner' metadata\) is not a JSON object \(got list\)"),
    (lambda c: json.dumps({**c, "num_layers": 20000}), "num_layers must be a whole number from 1 to 1,024, got 20000"),
    (lambda c: json.dumps({**c, "num_layers": 1000}), "the configuration describes a far larger model than the"),
    (lambda c: json.dumps({**c, "text_space": "abc"}), "text_space: a space must be an object with 'encoder'"),
    (lambda c: json.dumps({**c, "token_space": {"source": "s", "K": -1, "D": 8}}), "K must be a whole number from 0"),
    (lambda c: json.dumps({**c, "cameras": [["wide"]] * 100}), "cameras must be a list of camera values"),
    (lambda c: json.dumps({**c, "inputs": [["camera"]]}), r"reads input\(s\) \[\"\['camera'\]\"\] that this pack does not know"),
    (lambda c: json.dumps({**c, "version": "1"}), "version must be a whole number"),
])
def test_a_hostile_planner_configuration_is_refused_at_once_naming_its_field(tmp_path, change, message):
    """Found by an audit: 20000 layers in a 1 KB planner file took 40 s and 1.7 GB to refuse (the model is built
    from its configuration before its shapes are compared), a list as configuration gave an AttributeError, a text
    space as text a TypeError. Each is refused within a second, naming the file and the field."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from moviedreamer_core.planner.checkpoint import METADATA_KEY

    path = tmp_path / "p.safetensors"
    save_planner(random_model(), str(path))
    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(tmp_path / "claims.safetensors"),
              metadata={**meta, METADATA_KEY: change(json.loads(meta[METADATA_KEY]))})
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as err:
        load_planner(str(tmp_path / "claims.safetensors"))
    assert time.perf_counter() - start < 1.0
    assert "claims.safetensors" in str(err.value)


def test_checking_a_weights_file_changes_nothing_other_threads_see(tmp_path):
    """The check that stops a configuration describing a huge model (``state_shapes``) first added a global torch
    parameter-registration hook while it built: a model built in another thread meanwhile could fail ("OrderedDict
    mutated during iteration", with some library's own global hook), and two checks at once refused a good file (a
    review audit). Its budget is a torch function mode now, which belongs to its thread: torch's global hooks are the
    same during the build as before it, and another thread's build is not counted."""
    import threading

    import torch.nn.modules.module as torch_module
    from safetensors.torch import save_file

    from moviedreamer_core.state_shapes import require_matching_shapes

    path = str(tmp_path / "linear.safetensors")
    save_file(torch.nn.Linear(2, 2).state_dict(), path)
    before = dict(torch_module._global_parameter_registration_hooks)
    seen, other = [], []

    def build():
        seen.append(dict(torch_module._global_parameter_registration_hooks))
        worker = threading.Thread(target=lambda: other.append(torch.nn.Sequential(*[torch.nn.Linear(8, 8)] * 2000)))
        worker.start()  # 2000 layers in another thread, within the check: not the check's budget
        worker.join()
        return torch.nn.Linear(2, 2)
    require_matching_shapes(build, path)
    assert seen == [before] and len(other) == 1


def test_a_planner_file_claiming_other_sizes_than_its_weights_is_refused_before_allocating(tmp_path):
    """A configuration that claims 2048 hidden units over weights of 64 (hand-edited, or made to make a server
    allocate far more than the file holds): refused by the loader from the file's header, by tensor, without building
    the model it describes (which would take about 0.5 GB here, and terabytes for a hostile file)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from moviedreamer_core.planner.checkpoint import METADATA_KEY

    path = tmp_path / "p.safetensors"
    save_planner(random_model(), str(path))
    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    claimed = json.loads(meta[METADATA_KEY])
    claimed.update(hidden_size=2048, intermediate_size=4096)
    save_file(state, str(tmp_path / "claims.safetensors"), metadata={**meta, METADATA_KEY: json.dumps(claimed)})
    with pytest.raises(ValueError, match=r"claims.safetensors does not match its own configuration: tensors of other "
                                         r"shapes: .*\[64\] \(its configuration makes \[2048\]\)"):
        load_planner(str(tmp_path / "claims.safetensors"))
