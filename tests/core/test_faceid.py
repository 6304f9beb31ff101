"""IP-Adapter FaceID files (plain, plus, plus v2) as identity-only renderer adapters, without a host.

The files here are written in the public FaceID layout from random tensors, and the adapter's output is
compared with an independent functional implementation of IP-Adapter's ``ProjModelFaceIdPlus`` written
against the raw file keys, so a wrong key mapping or a wrong formula fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from moviedreamer_core.renderer import faceid_state_from_adapter, load_renderer, read_renderer_config
from moviedreamer_core.renderer.faceid import FACEID_IDENTITY_SPACE

C, DI, H, M = 32, 16, 24, 4  # context width, identity width, MLP hidden, identity tokens
E, HEADS, DEPTH = 20, 2, 2  # face-state width, perceiver heads (64 wide each), perceiver depth


def faceid_file_state(plus: bool, seed: int = 0, n_layers: int = 3, lora: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    s = {"image_proj.proj.0.weight": r(H, DI), "image_proj.proj.0.bias": r(H),
         "image_proj.proj.2.weight": r(M * C, H), "image_proj.proj.2.bias": r(M * C),
         "image_proj.norm.weight": 1 + r(C), "image_proj.norm.bias": r(C)}
    if plus:
        p, inner = "image_proj.perceiver_resampler.", HEADS * 64
        s.update({p + "proj_in.weight": r(C, E), p + "proj_in.bias": r(C), p + "proj_out.weight": r(C, C),
                  p + "proj_out.bias": r(C), p + "norm_out.weight": 1 + r(C), p + "norm_out.bias": r(C)})
        for i in range(DEPTH):
            q = f"{p}layers.{i}."
            s.update({q + "0.norm1.weight": 1 + r(C), q + "0.norm1.bias": r(C), q + "0.norm2.weight": 1 + r(C),
                      q + "0.norm2.bias": r(C), q + "0.to_q.weight": r(inner, C), q + "0.to_kv.weight": r(2 * inner, C),
                      q + "0.to_out.weight": r(C, inner), q + "1.0.weight": 1 + r(C), q + "1.0.bias": r(C),
                      q + "1.1.weight": r(4 * C, C), q + "1.3.weight": r(C, 4 * C)})
    for layer in range(n_layers):
        inner_dim = (24, 48, 24)[layer % 3]
        s[f"ip_adapter.{2 * layer + 1}.to_k_ip.weight"] = r(inner_dim, C)
        s[f"ip_adapter.{2 * layer + 1}.to_v_ip.weight"] = r(inner_dim, C)
        if lora:  # the FaceID LoRA lives next to the adapter weights in the original files; it belongs to the UNet
            s[f"ip_adapter.{2 * layer}.to_q_lora.down.weight"] = r(128, inner_dim)
    return s


def reference_faceid(s: dict, identity: torch.Tensor, faces: torch.Tensor | None, shortcut: bool) -> torch.Tensor:
    """IP-Adapter's ProjModelFaceIdPlus.forward, written out on the raw file keys."""
    p = lambda k: s["image_proj." + k]  # noqa: E731
    x = F.linear(F.gelu(F.linear(identity, p("proj.0.weight"), p("proj.0.bias"))), p("proj.2.weight"), p("proj.2.bias"))
    x = F.layer_norm(x.reshape(-1, M, C), (C,), p("norm.weight"), p("norm.bias"))
    if faces is None:
        return x
    q_ = lambda k: p("perceiver_resampler." + k)  # noqa: E731
    feats = F.linear(faces, q_("proj_in.weight"), q_("proj_in.bias"))
    lat = x
    for i in range(DEPTH):
        w = lambda k: q_(f"layers.{i}.{k}")  # noqa: E731
        xn = F.layer_norm(feats, (C,), w("0.norm1.weight"), w("0.norm1.bias"))
        ln = F.layer_norm(lat, (C,), w("0.norm2.weight"), w("0.norm2.bias"))
        q = F.linear(ln, w("0.to_q.weight"))
        k, v = F.linear(torch.cat([xn, ln], 1), w("0.to_kv.weight")).chunk(2, -1)
        heads = lambda t: t.reshape(t.shape[0], t.shape[1], HEADS, 64).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(lat.shape[0], M, -1)
        lat = F.linear(a, w("0.to_out.weight")) + lat
        ff = F.layer_norm(lat, (C,), w("1.0.weight"), w("1.0.bias"))
        lat = F.linear(F.gelu(F.linear(ff, w("1.1.weight"))), w("1.3.weight")) + lat
    out = F.layer_norm(F.linear(lat, q_("proj_out.weight"), q_("proj_out.bias")), (C,), q_("norm_out.weight"),
                       q_("norm_out.bias"))
    return x + out if shortcut else out


@pytest.mark.parametrize("name,plus,shortcut", [("ip-adapter-faceid_sd15.safetensors", False, False),
                                                ("ip-adapter-faceid-plus_sd15.safetensors", True, False),
                                                ("ip-adapter-faceid-plusv2_sd15.safetensors", True, True)])
def test_faceid_files_match_ip_adapters_own_formula(tmp_path, name, plus, shortcut):
    state = faceid_file_state(plus)
    save_file(state, str(tmp_path / name))
    assert read_renderer_config(str(tmp_path / name)) is None  # a public file, converted on the fly
    a = load_renderer(str(tmp_path / name))
    assert a.cfg.source == "ipadapter-faceid" + ("-plusv2" if shortcut else "-plus" if plus else "")
    assert not a.cfg.token_path and not a.has_token_path and a.token_proj is None
    assert a.cfg.identity_space == dict(FACEID_IDENTITY_SPACE, dim=DI) and a.cfg.identity_tokens == M
    assert a.needs_face_states == plus and a.cfg.extra["ignored_lora_keys"] == 3
    assert a.cfg.layer_dims == [24, 48, 24] and a.cfg.context_dim == C
    identity = F.normalize(torch.randn(3, DI), dim=-1)
    faces = torch.randn(3, 7, E) if plus else None  # any number of CLIP Vision states (257 for ViT-H at 224 px)
    with torch.no_grad():
        got = a.project_identity(identity, faces)
    assert got.shape == (3, M, C)
    torch.testing.assert_close(got, reference_faceid(state, identity, faces, shortcut), atol=1e-5, rtol=1e-4)
    # the decoupled key/value pair of layer 1 is the file's ip_adapter.3
    k, v = a.layer_kv(1, got, identity=True)
    torch.testing.assert_close(v, got @ state["ip_adapter.3.to_v_ip.weight"].T)
    # the inverse mapping writes the same file (the LoRA keys are not the adapter's)
    back = faceid_state_from_adapter(a)
    assert set(back) == {k for k in state if "_lora" not in k}
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_faceid_plus_without_face_states_is_a_clear_error(tmp_path):
    save_file(faceid_file_state(plus=True), str(tmp_path / "ip-adapter-faceid-plusv2_sd15.safetensors"))
    a = load_renderer(str(tmp_path / "ip-adapter-faceid-plusv2_sd15.safetensors"))
    with pytest.raises(ValueError, match="face crops' CLIP Vision hidden states"):
        a.project_identity(torch.randn(1, DI))


def test_faceid_renderers_are_not_trained_by_the_token_trainer(tmp_path):
    from moviedreamer_core.renderer.train import RendererBatch, renderer_loss

    save_file(faceid_file_state(plus=False), str(tmp_path / "ip-adapter-faceid_sd15.safetensors"))
    a = load_renderer(str(tmp_path / "ip-adapter-faceid_sd15.safetensors"))
    batch = RendererBatch(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 4), torch.zeros(1, 2, C), torch.zeros(1, DI))
    with pytest.raises(ValueError, match="loaded, not trained"):
        renderer_loss(a, batch, lambda *args: args[0], torch.ones(1), torch.zeros(1, 4, 8, 8))


def test_faceid_renderer_saved_in_moviedreamer_format_round_trips(tmp_path):
    """A FaceID adapter saved as a MovieDreamer renderer keeps its identity projector (perceiver, shortcut)."""
    from moviedreamer_core.renderer import save_renderer

    save_file(faceid_file_state(plus=True), str(tmp_path / "ip-adapter-faceid-plusv2_sd15.safetensors"))
    a = load_renderer(str(tmp_path / "ip-adapter-faceid-plusv2_sd15.safetensors"))
    save_renderer(a, str(tmp_path / "md.safetensors"))
    b = load_renderer(str(tmp_path / "md.safetensors"))
    assert b.cfg == a.cfg and b.needs_face_states and b.identity_proj.shortcut
    identity, faces = torch.randn(2, DI), torch.randn(2, 5, E)
    with torch.no_grad():
        assert torch.equal(a.project_identity(identity, faces), b.project_identity(identity, faces))
