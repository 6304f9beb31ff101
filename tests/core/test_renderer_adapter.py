"""The renderer adapter's files and the movie project folder, without a host."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from moviedreamer_core.project import MovieProject
from moviedreamer_core.renderer import (
    RendererAdapter,
    RendererConfig,
    adapter_from_ipadapter,
    ipadapter_state_from_adapter,
    load_renderer,
    place_features,
    read_renderer_config,
    save_renderer,
)
from moviedreamer_core.spaces import TokenSpace


def make(identity=True) -> RendererAdapter:
    torch.manual_seed(0)
    return RendererAdapter(RendererConfig(
        token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 16}, context_dim=32, layer_dims=[24, 48, 24],
        context_tokens=4, identity_space={"encoder": "dlib_resnet_v1", "dim": 128} if identity else None, identity_tokens=2))


def test_a_renderer_file_claiming_other_sizes_than_its_weights_is_refused_before_allocating(tmp_path):
    """As for planner files: a configuration claiming a context of 65536 channels over weights of 32 is refused by
    tensor from the file's header, not built (that adapter alone would take gigabytes). (Wider ones are refused by
    the configuration's own limits: ``test_a_hostile_renderer_configuration_is_refused_at_once_naming_its_field``.)"""
    from safetensors import safe_open

    save_renderer(make(), str(tmp_path / "r.safetensors"))
    with safe_open(str(tmp_path / "r.safetensors"), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k in meta if "renderer" in k)
    claimed = json.loads(meta[key])
    claimed["context_dim"] = 1 << 16
    save_file(state, str(tmp_path / "claims.safetensors"), metadata={**meta, key: json.dumps(claimed)})
    with pytest.raises(ValueError, match=r"claims.safetensors does not match its own configuration: tensors of other "
                                         r"shapes: .*\(its configuration makes \[.*65536"):
        load_renderer(str(tmp_path / "claims.safetensors"))


def _claiming(tmp_path, change) -> str:
    """The ``make()`` renderer's file with its configuration's JSON text replaced by ``change(config)``."""
    from safetensors import safe_open

    save_renderer(make(), str(tmp_path / "r.safetensors"))
    with safe_open(str(tmp_path / "r.safetensors"), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k in meta if "renderer" in k)
    save_file(state, str(tmp_path / "claims.safetensors"), metadata={**meta, key: change(json.loads(meta[key]))})
    return str(tmp_path / "claims.safetensors")


@pytest.mark.parametrize("change, message", [
    (lambda c: "[1, 2]", r"its configuration \('moviedreamer_renderer' metadata\) is not a JSON object \(got list\)"),
    (lambda c: "{not json", "Expecting property name"),
    (lambda c: json.dumps({**c, "context_dim": -5}), "context_dim must be a whole number from 1 to 65,536, got -5"),
    (lambda c: json.dumps({**c, "context_dim": "32"}), "context_dim must be a whole number"),
    (lambda c: json.dumps({**c, "colour": 1}), r"unknown renderer config fields: \['colour'\]"),
    (lambda c: json.dumps({**c, "version": 2, "field_of_v2": 1}), "renderer format 2 is newer than this pack understands"),
    (lambda c: json.dumps({**c, "version": "1"}), "version must be a whole number from 0 to 1,048,576, got '1'"),
    (lambda c: json.dumps({k: v for k, v in c.items() if k != "layer_dims"}), r"fields missing: \['layer_dims'\]"),
    (lambda c: json.dumps({**c, "layer_dims": [8] * 200000}), "layer_dims must be a list of at most 1024 whole "
                                                              "numbers from 1 to 65,536, got a list of 200,000"),
    (lambda c: json.dumps({**c, "token_space": "abc"}), "a space must be an object with 'source'"),
    (lambda c: json.dumps({**c, "identity_space": {"encoder": "x", "dim": 10 ** 12}}), "dim must be a whole number"),
    (lambda c: json.dumps({**c, "token_path": "yes"}), "token_path must be true or false"),
    (lambda c: json.dumps({**c, "resampler": {"dim": 8, "depth": 100000, "dim_head": 4, "heads": 2, "embedding_dim": 16,
                                               "output_dim": 32, "num_queries": 4}}),
     "the configuration describes a far larger model than the"),
    (lambda c: json.dumps({**c, "resampler": {"depth": 2}}), "its configuration describes no model this pack can build"),
])
def test_a_hostile_renderer_configuration_is_refused_at_once_naming_its_field(tmp_path, change, message):
    """Found by an audit: a renderer file's configuration was taken as written (``RendererConfig(**d)``): a list gave an
    AttributeError, a negative width a torch error, 200000 layers took 4 minutes and 6.4 GB of the server to refuse.
    Each is refused within a second, by a message naming the file and the field."""
    path = _claiming(tmp_path, change)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as err:
        load_renderer(path)
    assert time.perf_counter() - start < 1.0
    assert "claims.safetensors" in str(err.value)


def test_renderer_file_round_trip(tmp_path):
    a = make()
    save_renderer(a, str(tmp_path / "r.safetensors"))
    b = load_renderer(str(tmp_path / "r.safetensors"))
    assert b.cfg == a.cfg and b.cfg.tokens == TokenSpace("clip_vision.image_embeds", 1, 16)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    tokens = torch.randn(2, 1, 16)
    assert b.project_tokens(tokens).shape == (2, 4, 32)
    assert b.project_identity(torch.randn(3, 128)).shape == (3, 2, 32)
    k, v = b.layer_kv(1, torch.randn(2, 4, 32))
    assert k.shape == v.shape == (2, 4, 48)


def test_plain_ipadapter_file_maps_onto_the_adapter(tmp_path):
    a = make(identity=False)
    save_file(ipadapter_state_from_adapter(a), str(tmp_path / "ip-adapter_sd15.safetensors"))
    assert read_renderer_config(str(tmp_path / "ip-adapter_sd15.safetensors")) is None
    b = load_renderer(str(tmp_path / "ip-adapter_sd15.safetensors"))
    assert b.cfg.source == "ipadapter" and b.cfg.layer_dims == [24, 48, 24] and b.cfg.context_tokens == 4
    x = torch.randn(1, 1, 16)
    assert torch.allclose(a.project_tokens(x), b.project_tokens(x))
    assert torch.equal(a.layer_kv(2, a.project_tokens(x))[1], b.layer_kv(2, b.project_tokens(x))[1])


def test_unsupported_ipadapter_variants_are_named(tmp_path):
    with pytest.raises(ValueError, match="an IP-Adapter layout this pack does not know"):
        adapter_from_ipadapter({"image_proj.mlp.weight": torch.zeros(16, 8), "ip_adapter.1.to_k_ip.weight": torch.zeros(8, 8)},
                               "odd.safetensors")
    with pytest.raises(ValueError, match="neither a MovieDreamer renderer nor an IP-Adapter"):
        adapter_from_ipadapter({"w": torch.zeros(1)}, "lora.safetensors")


def test_project_folder_records_keyframes_and_detects_changes(tmp_path):
    project = MovieProject(str(tmp_path), "My Movie: Part 1/2")
    assert project.root.startswith(str(tmp_path)) and "/moviedreamer/" in project.root
    project.set_script("abc", "My Movie")
    image = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    project.save_keyframe(0, image, "sig0", {"shot": "s1"})
    again = MovieProject(str(tmp_path), "My Movie: Part 1/2")
    assert again.keyframe_done(0, "sig0") and not again.keyframe_done(0, "other") and not again.keyframe_done(1, "sig0")
    assert np.array_equal(again.load_keyframe(0), image)
    manifest = json.loads((tmp_path / "moviedreamer" / again.name / "manifest.json").read_text())
    assert manifest["keyframes"]["0"]["shot"] == "s1" and manifest["script_hash"] == "abc"
    # a truncated image is not "done"
    path = tmp_path / "moviedreamer" / again.name / again.keyframe_file(0)
    path.write_bytes(path.read_bytes()[:40])
    assert not MovieProject(str(tmp_path), "My Movie: Part 1/2").keyframe_done(0, "sig0")
    # an edited script keeps the record: signatures decide what still fits
    project.save_keyframe(0, image, "sig0", {"shot": "s1"})
    other = MovieProject(str(tmp_path), "My Movie: Part 1/2")
    other.set_script("different", "Other")
    assert other.keyframe_done(0, "sig0") and other.manifest["script_hash"] == "different"
    assert not list((tmp_path / "moviedreamer" / again.name).glob(".tmp_*"))


def test_plus_ipadapter_file_maps_onto_a_resampler_adapter(tmp_path):
    from moviedreamer_core.renderer.resampler import Resampler

    torch.manual_seed(0)
    shape = dict(dim=32, depth=2, dim_head=64, heads=2, num_queries=4, embedding_dim=24, output_dim=32, ff_mult=4)
    a = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.penultimate_hidden_states", "K": 0, "D": 24},
                                       context_dim=32, layer_dims=[24, 48], context_tokens=4, resampler=shape))
    assert isinstance(a.token_proj, Resampler)
    state = ipadapter_state_from_adapter(a)
    assert "image_proj.latents" in state and "image_proj.layers.1.1.3.weight" in state
    save_file(state, str(tmp_path / "ip-adapter-plus_sd15.safetensors"))
    b = load_renderer(str(tmp_path / "ip-adapter-plus_sd15.safetensors"))
    assert b.cfg.source == "ipadapter-plus"
    assert b.cfg.resampler == shape and b.cfg.tokens.K == 0
    x = torch.randn(1, 9, 24)
    assert torch.allclose(a.project_tokens(x), b.project_tokens(x), atol=1e-6)
    features = torch.randn(2, 17, 24)  # any number of patch features
    assert b.project_tokens(features).shape == (2, 4, 32)


def test_token_space_acceptance():
    any_k = TokenSpace("clip_vision.penultimate_hidden_states", 0, 1280)
    assert any_k.accepts(TokenSpace("clip_vision.penultimate_hidden_states", 257, 1280))
    assert not any_k.accepts(TokenSpace("clip_vision.penultimate_hidden_states", 257, 1024))
    assert not TokenSpace("clip_vision.image_embeds", 1, 1024).accepts(TokenSpace("clip_vision.image_embeds", 2, 1024))
    assert "K=any" in any_k.describe()


def test_keyframe_latents_are_kept_for_their_signature(tmp_path):
    project = MovieProject(str(tmp_path), "latents")
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    latent = torch.randn(1, 4, 1, 1)
    project.save_keyframe(0, image, "sig", {}, latent=latent)
    assert torch.equal(project.load_keyframe_latent(0, "sig"), latent)
    assert project.load_keyframe_latent(0, "other") is None, "a latent of another render is not reused"
    assert project.load_keyframe_latent(1, "sig") is None
    path = tmp_path / "moviedreamer" / project.name / project.latent_file(0)
    path.write_bytes(path.read_bytes()[:20])
    assert project.load_keyframe_latent(0, "sig") is None, "a truncated file is not read"


def test_identity_slots_tell_the_renderer_which_place_each_character_takes(tmp_path):
    """Attention cannot tell the order of a keyframe's identities; with ``identity_slots`` the i-th character's
    tokens carry slot i's embedding, so swapping two characters changes the context (and without slots it only
    permutes it). Characters past the last slot get none; the slots survive the file round trip."""
    a = make()
    ids = torch.randn(2, 3, 128)
    plain = a.identity_context(ids)
    assert plain.shape == (2, 6, 32) and a.identity_slot is None
    torch.testing.assert_close(a.identity_context(ids[:1]), plain[:1])  # one keyframe
    with pytest.raises(ValueError, match=r"identities must be \[keyframes, characters, dim\], got shape \(3, 128\)"):
        a.identity_context(ids[0])  # [n, Di] or [B, Di]? the caller says
    torch.testing.assert_close(plain[:, :2], a.project_identity(ids[:, 0]))
    torch.testing.assert_close(a.identity_context(ids.flip(1)), torch.cat([plain[:, 4:], plain[:, 2:4], plain[:, :2]], 1))

    torch.manual_seed(1)
    cfg = RendererConfig(**{**a.cfg.__dict__, "identity_slots": 2})
    s = RendererAdapter(cfg)
    slotted = s.identity_context(ids)
    own = torch.stack([s.project_identity(ids[:, i]) for i in range(3)], 1)  # [B, n, M, C]
    torch.testing.assert_close(slotted.reshape(2, 3, 2, 32), own + torch.cat([s.identity_slot, torch.zeros(1, 2, 32)])[None])
    swapped = s.identity_context(ids[:, [1, 0, 2]])
    assert not torch.allclose(swapped[:, :2], slotted[:, 2:4])  # the same character in another place reads differently
    torch.testing.assert_close(swapped[:, 4:], slotted[:, 4:])  # the third has no slot: unchanged
    assert s.identity_context(ids[:, :0]).shape == (2, 0, 32)
    save_renderer(s, str(tmp_path / "slots.safetensors"))
    t = load_renderer(str(tmp_path / "slots.safetensors"))
    assert t.cfg.identity_slots == 2 and torch.equal(t.identity_context(ids), slotted)
    d = {k: v for k, v in a.cfg.__dict__.items() if k != "identity_slots"}  # a file from before the option
    assert RendererConfig(**d).identity_slots == 0


def test_empty_slots_tell_the_renderer_how_many_characters_there_are(tmp_path):
    """Attention normalises over its keys, so without fillers one character's context attends the same as that
    character beside a second; with ``identity_empty_slots`` the places after the last character hold their own
    learned "nobody here" tokens, so one and two characters give different contexts even where the first is the
    same. Zero characters get fillers only (every place empty), more than the slots get no filler."""
    a = make()
    with pytest.raises(ValueError, match="identity_empty_slots needs identity_slots"):
        RendererAdapter(RendererConfig(**{**a.cfg.__dict__, "identity_empty_slots": True}))
    torch.manual_seed(2)
    s = RendererAdapter(RendererConfig(**{**a.cfg.__dict__, "identity_slots": 3, "identity_empty_slots": True}))
    ids = torch.randn(2, 4, 128)
    one, two = s.identity_context(ids[:, :1]), s.identity_context(ids[:, :2])
    assert one.shape == two.shape == (2, 6, 32)  # three places of M = 2 tokens each
    torch.testing.assert_close(one[:, :2], two[:, :2])  # the first character reads the same...
    torch.testing.assert_close(one[:, 2:], s.identity_empty[1:].reshape(1, 4, 32).expand(2, -1, -1))  # ...then nobody
    torch.testing.assert_close(two[:, 4:], s.identity_empty[2].expand(2, -1, -1))
    assert not torch.allclose(one[:, 2:4], two[:, 2:4])  # place 2: nobody against the second character
    three = s.identity_context(ids[:, :3])
    assert s.identity_context(ids).shape == (2, 8, 32)  # a fourth character: no place, no filler
    torch.testing.assert_close(s.identity_context(ids)[:, :6], three)
    nobody = s.identity_context(ids[:, :0])  # nobody on screen: every place says so
    torch.testing.assert_close(nobody, s.identity_empty.reshape(1, 6, 32).expand(2, -1, -1))
    assert s.has_empty_slots and not make().has_empty_slots and make().identity_context(ids[:, :0]).shape == (2, 0, 32)
    q = torch.randn(2, 5, 32)  # what reaches the pixels: attention over the context differs
    attn = lambda ctx: torch.softmax(q @ ctx.transpose(1, 2), -1) @ ctx  # noqa: E731
    assert not torch.allclose(attn(one), attn(s.identity_context(ids[:, :1])[:, :2]))
    save_renderer(s, str(tmp_path / "empty.safetensors"))
    t = load_renderer(str(tmp_path / "empty.safetensors"))
    assert t.cfg.identity_empty_slots and torch.equal(t.identity_context(ids[:, :1]), one)
    torch.testing.assert_close(t.identity_context(ids[:, :0]), nobody)
    d = {k: v for k, v in s.cfg.__dict__.items() if k != "identity_empty_slots"}  # a file from before the option
    assert RendererConfig(**d).identity_empty_slots is False


def test_identity_positions_give_each_place_its_own_query_term(tmp_path):
    """The slots name places left to right; ``identity_positions`` lets a pixel's identity query say where it is:
    a learned map of Fourier features of the normalised coordinates, zero at first (the plain attention), the same
    place reading the same at any grid size, left and right reading differently once trained."""
    a = make()
    assert a.identity_query_offset(0, 4, 4) is None  # off unless asked for
    feats = place_features(4, 8, 3)  # y: sines then cosines over the frequencies; then x the same
    assert feats.shape == (32, 12) and feats.abs().max() <= 1
    torch.testing.assert_close(place_features(1, 1, 3)[0], place_features(3, 3, 3)[4])  # the centre, at any size
    assert not torch.allclose(feats.reshape(4, 8, 12)[:, 0], feats.reshape(4, 8, 12)[:, -1])  # left is not right
    torch.testing.assert_close(place_features(3, 5, 2).reshape(3, 5, 8)[1, 2], torch.tensor([0., 0, 1, 1, 0, 0, 1, 1]))  # the centre: sines 0, cosines 1
    s = RendererAdapter(RendererConfig(**{**a.cfg.__dict__, "identity_slots": 3, "identity_positions": 3}))
    assert len(s.identity_pos) == 3 and s.identity_pos[1].weight.shape == (48, 12)
    assert torch.equal(s.identity_query_offset(1, 4, 8), torch.zeros(32, 48))  # zero-initialised
    with torch.no_grad():
        s.identity_pos[1].weight.normal_()
    off = s.identity_query_offset(1, 4, 8)
    assert off.shape == (32, 48) and not torch.allclose(off[0], off[7])
    save_renderer(s, str(tmp_path / "pos.safetensors"))
    t = load_renderer(str(tmp_path / "pos.safetensors"))
    assert t.cfg.identity_positions == 3 and torch.equal(t.identity_query_offset(1, 4, 8), off)


def test_identity_places_put_each_character_at_the_place_the_tokens_show(tmp_path):
    """``identity_places``: the slots are screen places. Given places (training: the true ones) each character's
    tokens land at its place, every other place holds its filler; without places the place head reads them from the
    tokens (the n most likely, left to right); with neither, a medium shot's framing. ``token_positions`` puts the
    place term on the token queries, zero at first. Both travel in the file; older files load without them."""
    a = make()
    with pytest.raises(ValueError, match="identity_places needs"):
        RendererAdapter(RendererConfig(**{**a.cfg.__dict__, "identity_slots": 3, "identity_places": True}))
    torch.manual_seed(3)
    s = RendererAdapter(RendererConfig(**{**a.cfg.__dict__, "identity_slots": 3, "identity_empty_slots": True,
                                          "identity_places": True, "token_positions": 2}))
    M, C = 2, 32
    ids = torch.randn(2, 2, 128)
    ctx = s.identity_context(ids[:, :1], places=torch.tensor([[2], [0]])).reshape(2, 3, M, C)
    alone = s.project_identity(ids[:, 0])  # [2, M, C]
    torch.testing.assert_close(ctx[0, 2], alone[0] + s.identity_slot[2])  # at the right
    torch.testing.assert_close(ctx[0, :2], s.identity_empty[:2])  # nobody at the left and the centre
    torch.testing.assert_close(ctx[1, 0], alone[1] + s.identity_slot[0])
    torch.testing.assert_close(ctx[1, 1:], s.identity_empty[1:])
    two = s.identity_context(ids, places=torch.tensor([[0, 1], [1, 2]])).reshape(2, 3, M, C)
    torch.testing.assert_close(two[1, 2], s.project_identity(ids[:, 1])[1] + s.identity_slot[2])  # second, rightmost
    torch.testing.assert_close(two[1, 0], s.identity_empty[0])
    tokens = torch.randn(2, 1, 16)
    with torch.no_grad():  # a place head that reads "the right" off the first token value's sign
        s.place_head.weight.zero_()
        s.place_head.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
        s.place_head.weight[2, 0] = 10.0
    tokens[0, 0, 0], tokens[1, 0, 0] = 1.0, -1.0
    assert s.choose_places(tokens, 1).tolist() == [[2], [1]] and s.choose_places(tokens, 2).tolist() == [[1, 2], [0, 1]]
    torch.testing.assert_close(s.identity_context(ids[:, :1], tokens=tokens),
                               s.identity_context(ids[:, :1], places=torch.tensor([[2], [1]])))
    torch.testing.assert_close(s.identity_context(ids), s.identity_context(ids, places=torch.tensor([[0, 2], [0, 2]])))
    torch.testing.assert_close(s.identity_context(ids[:, :0], tokens=tokens), s.identity_empty.reshape(1, 6, C).expand(2, -1, -1))
    with pytest.raises(ValueError, match="3 places"):
        s.identity_context(torch.randn(1, 4, 128))
    assert torch.equal(s.token_query_offset(0, 4, 4), torch.zeros(16, 24)) and a.token_query_offset(0, 4, 4) is None
    save_renderer(s, str(tmp_path / "places.safetensors"))
    t = load_renderer(str(tmp_path / "places.safetensors"))
    assert t.cfg.identity_places and t.cfg.token_positions == 2
    torch.testing.assert_close(t.identity_context(ids[:, :1], tokens=tokens), s.identity_context(ids[:, :1], tokens=tokens))
    old = {k: v for k, v in s.cfg.__dict__.items() if k not in ("identity_places", "token_positions")}
    assert RendererConfig(**old).identity_places is False and RendererConfig(**old).token_positions == 0
