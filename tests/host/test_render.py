"""IdentityDiffusionRender on the real host: tiny UNets of the host's own classes, real samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviedreamer_core.renderer import RendererAdapter, RendererConfig

SCRIPT = """
title: Render Test {n}
style: pencil drawing
characters:
  - name: Eileen
    description: an astronaut in an orange suit
    references: [astronaut.png]
  - name: Grace
    description: a naval officer in uniform
    references: [0]
shots:
{shots}
"""


def script(n_keyframes: int, title_suffix: str = "") -> str:
    shots = []
    for i in range(n_keyframes):
        who = ["[Eileen]", "[Grace]", "[Eileen, Grace]", "[]"][i % 4]
        shots.append(f"  - id: s{i}\n    scene: room number {i}\n    action: something happens {i}.\n"
                     f"    characters: {who}\n    duration: 2\n")
    return SCRIPT.format(n=f"{n_keyframes}{title_suffix}", shots="".join(shots))


def graph(text, renderer="tiny_renderer.safetensors", plan_seed=0, render_seed=0, project="", token_weight=1.0,
          identity_weight=1.0, temperature=1.0):
    return {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "5": {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}},
        "9": {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": 0}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "hopper.png"}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": text, "script_file": "(none: use the text above)", "clip": ["1", 0],
            "face_embedder": "clip_vision_crop", "images": ["3", 0], "clip_vision": ["5", 0]}},
        "6": {"class_type": "MovieDreamerPlannerLoader", "inputs": {"planner_name": "(zero-shot prior: no planner file)"}},
        "7": {"class_type": "ARKeyframePlanner", "inputs": {
            "planner": ["6", 0], "script_embeds": ["2", 1], "seed": plan_seed, "temperature": temperature,
            "guidance": 1.0, "context_window": 4, "few_shot_references": True}},
        "10": {"class_type": "MovieDreamerRendererLoader", "inputs": {"renderer_name": renderer}},
        "11": {"class_type": "IdentityDiffusionRender", "inputs": {
            "model": ["9", 0], "vae": ["9", 1], "renderer": ["10", 0], "storyboard": ["7", 0], "script_embeds": ["2", 1],
            "seed": render_seed, "steps": 2, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal", "width": 64,
            "height": 64, "token_weight": token_weight, "identity_weight": identity_weight, "start_percent": 0.0,
            "end_percent": 1.0, "project_name": project, "negative_prompt": "blurry", "clip": ["1", 0]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
    }


def previews(host, result) -> list[np.ndarray]:
    assert result.valid, result.error_text()
    assert result.success, result.error_text()
    temp = Path(host.folder_paths.get_temp_directory())
    return [np.asarray(Image.open(temp / im["subfolder"] / im["filename"])).astype(np.int16) for im in result.outputs["12"]["images"]]


# ------------------------------------------------------------------------------------------ the patch


def _count_attn2_blocks(model) -> int:
    return sum(1 for m in model.model.diffusion_model.modules() if type(m).__name__ == "BasicTransformerBlock" and m.attn2 is not None)


@pytest.mark.parametrize("layout", ["sd15", "sdxl"])
def test_every_cross_attention_layer_is_patched_exactly_once(host, testing, patching, layout):
    model = testing.tiny_sd(0, layout=layout)
    layers = patching.discover_cross_attention(model)
    assert len(layers) == _count_attn2_blocks(model) == (7 if layout == "sd15" else 11)
    assert len({l.key for l in layers}) == len(layers)
    if layout == "sdxl":
        assert ("middle", 0, 1) in {l.key for l in layers}
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64,
                                             layer_dims=[l.inner_dim for l in layers]))
    state = patching.AdapterState(host.pack_submodule("nodes.host").managed(adapter), layers,
                                  torch.zeros(1, 4, 64), torch.zeros(1, 4, 64), None, 1.0, 0.0, 1e9, 0.0)
    patched = patching.patch_model(model, state)
    replace = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert set(replace) == {l.key for l in layers}
    calls = {}
    for key, fn in list(replace.items()):
        def counting(q, k, v, extra, fn=fn, key=key):
            calls[key] = calls.get(key, 0) + 1
            return fn(q, k, v, extra)
        replace[key] = counting
    base = patched.model
    kwargs = {"y": torch.zeros(1, base.adm_channels)} if base.adm_channels else {}
    with torch.no_grad():
        base.apply_model(torch.zeros(1, 4, 16, 16), torch.ones(1), c_crossattn=torch.zeros(1, 7, 64),
                         transformer_options=patched.model_options["transformer_options"], **kwargs)
    assert calls == {l.key: 1 for l in layers}
    assert model.model_options["transformer_options"].get("patches_replace") is None, "the input MODEL is not modified"


def test_zero_weights_reproduce_the_plain_sampler_exactly(host, testing, patching):
    hostmod = host.pack_submodule("nodes.host")
    model = testing.tiny_sd(1)
    layers = patching.discover_cross_attention(model)
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64,
                                             layer_dims=[l.inner_dim for l in layers],
                                             identity_space={"encoder": "i", "dim": 8}))
    managed = hostmod.managed(adapter)
    tokens = adapter.project_tokens(torch.randn(1, 1, 8)).detach()
    ids = adapter.project_identity(torch.randn(1, 8)).detach()
    cond = [[torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0)), {}]]
    uncond = [[torch.zeros(1, 12, 64), {}]]

    def run(m):
        return hostmod.sample_latent(m, 42, 3, 5.0, "euler", "normal", cond, uncond, torch.zeros(1, 4, 8, 8))

    plain = run(model)
    off = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 0.0, 0.0, 1e9, 0.0))
    assert torch.equal(run(off), plain)
    on = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 1.0, 0.0, 1e9, 0.0))
    assert not torch.allclose(run(on), plain)
    ident = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 0.0, 1.0, 1e9, 0.0))
    assert not torch.allclose(run(ident), plain)
    outside = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 1.0, 1.0, -1.0, -2.0))
    assert torch.equal(run(outside), plain), "outside its sigma range the adapter does nothing"


class _UsersReplacement:
    """An ``attn2`` replacement of the kind IP-Adapter Plus puts on every layer: the layer's attention plus half of an
    attention to a context of its own."""

    def __init__(self, scale: float):
        self.scale = scale
        self.calls = 0

    def __call__(self, q, k, v, extra):
        from comfy.ldm.modules.attention import optimized_attention

        self.calls += 1
        out = optimized_attention(q, k, v, extra["n_heads"])
        return out + self.scale * optimized_attention(q, k.flip(1), v.flip(1) * 2.0, extra["n_heads"])

    def __deepcopy__(self, memo):
        return self


@pytest.mark.parametrize("key_form", ["block, number, index", "block, number"])
def test_a_cross_attention_replacement_already_on_the_model_is_kept(host, testing, patching, key_form):
    """Found by an audit: an IP-Adapter-style ``attn2`` replacement the user's graph put on the MODEL was overwritten by
    the renderer's, so it did nothing. With the renderer's weights at 0 the keyframe now samples exactly as the host's
    sampler on the MODEL as given, the user's replacement included, under either key form the host reads."""
    hostmod = host.pack_submodule("nodes.host")
    model = testing.tiny_sd(1)
    layers = patching.discover_cross_attention(model)
    users = model.clone()
    mine = _UsersReplacement(0.5)
    for layer in layers:
        block, number, index = layer.key
        users.set_model_attn2_replace(mine, block, number, *([index] if key_form == "block, number, index" else []))
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64,
                                             layer_dims=[l.inner_dim for l in layers]))
    managed = hostmod.managed(adapter)
    tokens = adapter.project_tokens(torch.randn(1, 1, 8)).detach()
    cond = [[torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0)), {}]]
    uncond = [[torch.zeros(1, 12, 64), {}]]

    def run(m):
        return hostmod.sample_latent(m, 42, 3, 5.0, "euler", "normal", cond, uncond, torch.zeros(1, 4, 8, 8))

    with_users = run(users)
    assert mine.calls and not torch.allclose(with_users, run(model)), "the replacement changes the picture"
    off = patching.patch_model(users, patching.AdapterState(managed, layers, tokens, tokens * 0, None, 0.0, 0.0, 1e9, 0.0))
    mine.calls = 0
    assert torch.equal(run(off), with_users)
    assert mine.calls, "the user's replacement ran inside the renderer's"
    on = patching.patch_model(users, patching.AdapterState(managed, layers, tokens, tokens * 0, None, 1.0, 0.0, 1e9, 0.0))
    plain_on = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, None, 1.0, 0.0, 1e9,
                                                                   0.0))
    assert not torch.allclose(run(on), run(plain_on)), "with the renderer on, the user's replacement still counts"


def test_the_identity_place_term_reaches_every_layer_on_its_own_grid(host, testing, patching):
    """``identity_positions``: every patched layer finds its grid in the host's ``activations_shape`` (the same
    number of cells as queries), a zero-initialised term samples exactly as the renderer without it, a trained one
    changes the image."""
    hostmod = host.pack_submodule("nodes.host")
    model = testing.tiny_sd(1)
    layers = patching.discover_cross_attention(model)
    base = dict(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64, layer_dims=[l.inner_dim for l in layers],
                identity_space={"encoder": "i", "dim": 8}, identity_slots=2)
    torch.manual_seed(0)
    plain = RendererAdapter(RendererConfig(**base))
    placed = RendererAdapter(RendererConfig(**base, identity_positions=2))
    missing, unexpected = placed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("identity_pos.") for k in missing) and len(missing) == len(layers)
    tokens = plain.project_tokens(torch.randn(1, 1, 8)).detach()
    cond = [[torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0)), {}]]
    uncond = [[torch.zeros(1, 12, 64), {}]]
    grids = []

    def run(adapter, record=False):
        ids = adapter.identity_context(torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(1))).detach()
        patched = patching.patch_model(model, patching.AdapterState(hostmod.managed(adapter), layers, tokens, tokens * 0,
                                                                    ids, 1.0, 1.0, 1e9, 0.0))
        if record:
            replace = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
            for key, fn in list(replace.items()):
                def recording(q, k, v, extra, fn=fn, key=key):
                    grids.append((key, q.shape[1], tuple(extra["activations_shape"][-2:])))
                    return fn(q, k, v, extra)
                replace[key] = recording
        return hostmod.sample_latent(patched, 42, 2, 5.0, "euler", "normal", cond, uncond, torch.zeros(1, 4, 16, 12))

    assert torch.equal(run(placed, record=True), run(plain)), "a zero place term is the plain attention"
    assert {k for k, _, _ in grids} == {l.key for l in layers}
    assert all(n == h * w for _, n, (h, w) in grids) and {(h, w) for _, _, (h, w) in grids} >= {(16, 12), (8, 6)}
    with torch.no_grad():
        for lin in placed.identity_pos:
            lin.weight.normal_(0, 1.0)
    assert not torch.allclose(run(placed), run(plain), atol=1e-4), "a trained place term reaches the image"


def test_the_token_place_term_is_the_plain_attention_until_trained(host, testing, patching):
    """``token_positions``: zero-initialised it samples exactly as the renderer without it (the unconditional chunk
    reads it too), a trained one changes the image; old files (no ``token_pos.*`` keys) load without it."""
    hostmod = host.pack_submodule("nodes.host")
    model = testing.tiny_sd(1)
    layers = patching.discover_cross_attention(model)
    base = dict(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64, layer_dims=[l.inner_dim for l in layers])
    torch.manual_seed(0)
    plain = RendererAdapter(RendererConfig(**base))
    placed = RendererAdapter(RendererConfig(**base, token_positions=2))
    missing, unexpected = placed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("token_pos.") for k in missing) and len(missing) == len(layers)
    tokens = plain.project_tokens(torch.randn(1, 1, 8)).detach()
    cond = [[torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0)), {}]]
    uncond = [[torch.zeros(1, 12, 64), {}]]

    def run(adapter):
        patched = patching.patch_model(model, patching.AdapterState(hostmod.managed(adapter), layers, tokens, tokens * 0,
                                                                    None, 1.0, 0.0, 1e9, 0.0))
        return hostmod.sample_latent(patched, 42, 2, 5.0, "euler", "normal", cond, uncond, torch.zeros(1, 4, 16, 12))

    assert torch.equal(run(placed), run(plain)), "a zero token place term is the plain attention"
    with torch.no_grad():
        for lin in placed.token_pos:
            lin.weight.normal_(0, 1.0)
    assert not torch.allclose(run(placed), run(plain), atol=1e-4), "a trained token place term reaches the image"


# ------------------------------------------------------------------------------------------- the node


def test_twelve_keyframes_render_through_the_executor_with_progress(host, photos, model_dirs):
    result = host.run(graph(script(12), project="twelve"))
    images = previews(host, result)
    assert len(images) == 12 and images[0].shape == (64, 64, 3)
    progress = [d for d in result.events("progress") if d["node"] == "11"]
    assert [d["value"] for d in progress][-1] == 12 and all(d["has_preview"] for d in progress)
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "twelve"
    assert len(list((folder / "keyframes").glob("*.png"))) == 12
    assert (folder / "manifest.json").is_file()


def encoded_graph(image: str, token_source: str = "image_embeds", **kw) -> dict:
    """One keyframe whose tokens are a real photo's CLIP Vision embedding (MovieDreamerKeyframeEncode)."""
    g = graph(script(1), **kw)
    g["20"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    g["21"] = {"class_type": "MovieDreamerKeyframeEncode", "inputs": {"images": ["20", 0], "clip_vision": ["5", 0],
                                                                    "token_source": token_source}}
    g["11"]["inputs"]["storyboard"] = ["21", 0]
    return g


def test_same_seed_same_image_other_tokens_other_image(host, photos, model_dirs):
    a = previews(host, host.run(encoded_graph("hopper.png", project="seed_a")))[0]
    b = previews(host, host.run(encoded_graph("hopper.png", project="seed_b")))[0]
    c = previews(host, host.run(encoded_graph("coffee.png", project="seed_c")))[0]
    off = previews(host, host.run(encoded_graph("hopper.png", project="seed_off", token_weight=0.0, identity_weight=0.0)))[0]
    assert np.array_equal(a, b), "same seed and tokens: the same image"
    assert np.abs(a - c).mean() > 0.1, "other tokens: another image"
    assert np.abs(a - off).mean() > 0.1, "the tokens reach the image"


def test_nobody_on_screen_reaches_a_renderer_with_empty_places(host, photos, model_dirs):
    """A keyframe with nobody on screen (the script's ``characters: []``): a renderer with "nobody here" fillers
    (``identity_empty_slots``) reads its all-empty identity context there, so the identity weight changes that
    keyframe; a renderer without them renders it with no identity path, so the weight changes nothing there."""
    def render(renderer, weight):
        return previews(host, host.run(graph(script(4), renderer=renderer, identity_weight=weight,
                                             project=f"nobody_{renderer[:5]}_{weight}")))

    slots_on, slots_off = render("slots_renderer.safetensors", 1.0), render("slots_renderer.safetensors", 0.0)
    plain_on, plain_off = render("tiny_renderer.safetensors", 1.0), render("tiny_renderer.safetensors", 0.0)
    assert np.abs(slots_on[3] - slots_off[3]).mean() > 0.1, "nobody on screen: the fillers reach the image"
    assert np.array_equal(plain_on[3], plain_off[3]), "without fillers nobody on screen means no identity path"
    assert np.abs(slots_on[2] - slots_off[2]).mean() > 0.1 and np.abs(plain_on[2] - plain_off[2]).mean() > 0.1


def test_rerun_reuses_finished_keyframes(host, photos, model_dirs):
    first = host.run(graph(script(3), project="resume"))
    previews(host, first)
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "resume" / "keyframes"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    again = host.run(graph(script(3), project="resume"))
    previews(host, again)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} == stamps
    assert len(list(folder.glob("*.latent.safetensors"))) == 3, "reused keyframes bring their latents, not a VAE pass"
    damaged = folder / "keyframe_00001.latent.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:40])
    previews(host, host.run(graph(script(3), project="resume")))
    from safetensors import safe_open

    with safe_open(str(damaged), framework="pt") as f:  # encoded again from the image once, and kept
        assert f.get_tensor("latent").shape[0] == 1
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} == stamps, "the images are not made again"
    # each entry names its plan's makers (Gather Movie compares participants): a keyframe reused under an older digest
    # gets this run's, or an edited script's rerun refused its own reused keyframes as "planned differently"
    import json

    from moviedreamer_core.project import MovieProject

    def plans():
        return {k: e.get("plan") for k, e in MovieProject(host.folder_paths.get_output_directory(), "resume")
                .manifest["keyframes"].items()}

    current = plans()
    assert len(set(current.values())) == 1 and None not in current.values(), current
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    manifest["keyframes"]["1"]["plan"] = "an older digest"
    (folder.parent / "manifest.json").write_text(json.dumps(manifest))
    previews(host, host.run(graph(script(3), project="resume")))
    assert plans() == current and {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} == stamps
    changed = host.run(graph(script(3), project="resume", render_seed=5))
    previews(host, changed)
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in folder.glob("*.png"))


def test_a_participant_with_no_keyframe_to_make_never_loads_the_model(host, photos, model_dirs):
    """IdentityDiffusionRender's sampling inputs (model, vae, clip, positive, negative) are lazy: a distributed master
    that only orchestrates (``master_renders`` off, the workers share every keyframe) runs it without the host ever
    executing the checkpoint loader, where an SDXL checkpoint would be loaded for nothing; a worker with keyframes to
    make loads it and renders its share. (The tiny model's seed is this test's own, so no earlier prompt's cache
    stands in for an execution.)"""
    import json

    from moviedreamer_core.distribution.participation import Participation

    def run(who):
        g = graph(script(2), project=f"lazy_render_{who.me}")
        g["9"]["inputs"]["seed"] = 71
        g["11"]["inputs"]["distributed"] = who.to_json()
        result = host.run(g)
        assert result.success, result.error_text()
        executed = {e["node"] for e in result.events("executing") if e.get("node")}
        return result, executed

    result, executed = run(Participation("job1", "master", ("w1", "w2"), master_renders=False))
    assert "11" in executed and "9" not in executed, executed
    assert "this participant's share: 0 of 2 keyframes" in result.outputs["11"]["text"][0]
    images = previews(host, result)
    assert len(images) == 2 and images[0].shape == (64, 64, 3) and not any(im.any() for im in images)
    result, executed = run(Participation("job1", "w1", ("w1", "w2"), master_renders=False))
    assert {"9", "11"} <= executed, executed
    assert "this participant's share: 1 of 2 keyframes" in result.outputs["11"]["text"][0]
    journal = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "lazy_render_w1" / "journals" / "w1.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    done = [r["key"][1] for r in records if r["key"][0] == "keyframes" and r.get("value", {}).get("status") == "done"]
    assert len(done) == 1, records  # its one keyframe, rendered with the model it loaded


def test_plain_ipadapter_file_renders(host, photos, model_dirs):
    result = host.run(graph(script(2), renderer="ipadapter/tiny_ipadapter.safetensors", project="ip"))
    images = previews(host, result)
    assert len(images) == 2
    # a renderer without an identity path says that the characters' photos do not steer it (an audit: silent)
    assert "has no identity path: the characters' reference photos do not steer" in result.outputs["11"]["text"][0]
    with_identity = host.run(graph(script(2), project="ip_identity"))
    assert "no identity path" not in with_identity.outputs["11"]["text"][0]


def test_plus_ipadapter_renders_penultimate_tokens_and_plain_refuses_them(host, photos, model_dirs):
    images = previews(host, host.run(encoded_graph("hopper.png", token_source="penultimate_hidden_states",
                                                   renderer="ipadapter/tiny_ipadapter_plus.safetensors", project="plus")))
    assert len(images) == 1
    refused = host.run(encoded_graph("hopper.png", token_source="penultimate_hidden_states",
                                     renderer="ipadapter/tiny_ipadapter.safetensors", project="plus_refused"))
    assert not refused.success
    assert "expects clip_vision.image_embeds (K=1, D=32), but the storyboard provides clip_vision.penultimate_hidden_states (K=17, D=64)" in refused.error_text()


def test_token_space_mismatch_is_refused_before_sampling(host, photos, model_dirs):
    result = host.run(graph(script(2), renderer="d16_renderer.safetensors", project="mismatch"))
    assert result.valid and not result.success
    text = result.error_text()
    assert "token space mismatch: the renderer d16_renderer.safetensors expects clip_vision.image_embeds (K=1, D=16)" in text
    assert "the storyboard provides clip_vision.image_embeds (K=1, D=32)" in text
    assert not (Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "mismatch").exists()


def test_patch_objects_survive_model_clones_without_copying_weights(host, testing, patching):
    import copy

    model = testing.tiny_sd(0)
    layers = patching.discover_cross_attention(model)
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64,
                                             layer_dims=[l.inner_dim for l in layers]))
    managed = host.pack_submodule("nodes.host").managed(adapter)
    state = patching.AdapterState(managed, layers, torch.zeros(1, 4, 64), torch.zeros(1, 4, 64), None, 1.0, 0.0, 1e9, 0.0)
    patched = patching.patch_model(model, state)
    clone = patched.clone()
    a = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
    b = clone.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert all(a[k] is b[k] for k in a) and copy.deepcopy(a[layers[0].key]) is a[layers[0].key]
    assert managed in patched.model_patches_models(), "the adapter loads with the UNet"


def test_cancel_stops_rendering_and_keeps_finished_keyframes(host, photos, model_dirs):
    result = host.run_and_cancel(graph(script(6), project="cancelled"), node="11", at_progress=2)
    assert result.events("execution_interrupted")
    folder = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "cancelled" / "keyframes"
    assert len(list(folder.glob("keyframe_*.png"))) == 2, "finished keyframes stay, the one in progress is not written"
    resumed = host.run(graph(script(6), project="cancelled"))
    assert len(previews(host, resumed)) == 6


# ------------------------------------------------------------------------------- IP-Adapter FaceID plus


def faceid_graph(n: int, project: str, identity_weight: float = 1.0, plan_seed: int = 0,
                 renderer: str = "tiny_faceid_plus.safetensors") -> dict:
    return graph(script(n, title_suffix=" faceid"), renderer=renderer, project=project, identity_weight=identity_weight,
                 plan_seed=plan_seed)


def test_faceid_plus_renders_identities_with_face_crops_and_ignores_tokens(host, photos, model_dirs):
    """Keyframes 0-2 have characters on screen (their identity and face-crop states steer the image), keyframe
    3 has none; the FaceID file has no token path, so another plan changes nothing."""
    a = previews(host, host.run(faceid_graph(4, "faceid_a")))
    stronger = previews(host, host.run(faceid_graph(4, "faceid_b", identity_weight=2.0)))
    replanned = previews(host, host.run(faceid_graph(4, "faceid_c", plan_seed=7)))
    assert all(np.abs(a[k] - stronger[k]).mean() > 0.1 for k in range(3)), "identities reach the image"
    assert np.array_equal(a[3], stronger[3]), "no character on screen: no identity"
    assert all(np.array_equal(x, y) for x, y in zip(a, replanned)), "tokens are not read by a FaceID adapter"


def test_faceid_plus_needs_clip_vision_face_crops_and_its_identity_space(host, photos, model_dirs):
    g = encoded_graph("hopper.png", renderer="dlib_faceid_plus.safetensors", project="faceid_no_cv")
    g["2"]["inputs"]["face_embedder"] = "dlib"
    del g["2"]["inputs"]["clip_vision"]  # the storyboard still comes from Keyframe Encode's CLIP Vision
    result = host.run(g)
    assert result.valid and not result.success
    assert "connect a CLIP Vision model (ViT-H for FaceID plus) to ScriptEncode's clip_vision" in result.error_text()
    public = host.run(faceid_graph(2, "faceid_public", renderer="ipadapter/tiny_faceid-plusv2.safetensors"))
    assert public.valid and not public.success
    text = public.error_text()
    assert "identity space mismatch: the renderer tiny_faceid-plusv2.safetensors (IP-Adapter FaceID files read InsightFace buffalo_l" in text
    assert "expects insightface_buffalo_l" in text
    assert not (Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "faceid_public").exists()


def test_a_missing_renderer_or_planner_file_is_refused_at_prompt_time(host, photos, model_dirs):
    g = graph(script(1), renderer="ipadapter/nowhere.safetensors", project="missing_file")
    g["6"]["inputs"]["planner_name"] = "story_v9.safetensors"
    result = host.run(g)
    assert not result.valid
    assert 'renderer file "nowhere.safetensors" not found in models/ipadapter' in result.input_errors("10")["renderer_name"]
    assert 'planner file "story_v9.safetensors" not found in models/moviedreamer' in result.input_errors("6")["planner_name"]


def test_pixel_space_models_render_at_the_asked_size(host, testing, patching, photos, model_dirs):
    """The empty latent follows the VAE's spatial compression (1 for the host's pixel-space VAE, 8 for SD)."""
    from moviedreamer_core.renderer import save_renderer

    layers = patching.discover_cross_attention(testing.tiny_sd(0, pixel_space=True))
    save_renderer(RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32},
                                                 context_dim=64, layer_dims=[l.inner_dim for l in layers])),
                  str(model_dirs[0] / "pixel_renderer.safetensors"))
    host.folder_paths.filename_list_cache.clear()
    g = graph(script(1), renderer="pixel_renderer.safetensors", project="pixel_space")
    g["9"]["inputs"]["pixel_space"] = True
    images = previews(host, host.run(g))
    assert images[0].shape == (64, 64, 3)


def test_bad_choices_and_out_of_range_numbers_are_refused_at_prompt_time(host, photos, model_dirs):
    """The host checks neither V3 combo values nor, once a node has validate_inputs, min/max: the pack does."""
    g = graph(script(1), project="typos")
    g["11"]["inputs"]["sampler_name"] = "eular"
    g["2"]["inputs"]["face_embedder"] = "arcface"
    g["13"] = {"class_type": "ShotAnimate", "inputs": {"keyframes": ["11", 0], "script": ["2", 0], "backend": "animatic",
                                                       "fps": 0.0, "frames_per_clip": 25, "project_name": "typos",
                                                       "seed": 0, "steps": 2, "cfg": 3.0, "sampler_name": "euler",
                                                       "scheduler": "simple"}}
    result = host.run(g)
    assert not result.valid
    assert 'sampler_name: "eular" is not one of the choices: euler,' in result.input_errors("11")["sampler_name"]
    assert 'face_embedder: "arcface" is not one of the choices: dlib, insightface, clip_vision_crop' in \
        result.input_errors("2")["face_embedder"]
    assert "fps: 0.0 is smaller than the minimum 1.0" in result.input_errors("13")["fps"]
    # under that input alone: the host puts a validate_inputs answer under every input it passed (an audit found
    # "steps: 0 is smaller than the minimum 1" under model, vae, clip, ... and those sockets circled in red): the
    # node's other widgets point to it, and no linked socket is named
    errors = result.input_errors("11")
    assert [name for name, text in errors.items() if "is not one of the choices" in text] == ["sampler_name"], errors
    assert all(text.endswith("see the problems listed under sampler_name") for name, text in errors.items()
               if name != "sampler_name") and len(errors) > 5, errors
    assert not set(errors) & {"model", "vae", "renderer", "storyboard", "script_embeds", "clip"}, errors
    assert not set(result.input_errors("2")) & {"images", "clip", "clip_vision"}, result.input_errors("2")


def test_not_a_number_a_width_off_the_grid_and_a_reversed_range_are_refused_at_prompt_time(host, photos, model_dirs):
    """NaN passes every min/max comparison: a renderer cfg or token weight of NaN rendered black keyframes marked done,
    a planner temperature of NaN failed deep in sampling naming no field, a NaN fps only after every keyframe. A width
    of 17 (the declared step is 8) was rendered as given; end_percent before start_percent was found after the planner
    had run. All are refused when the prompt is queued, naming the input."""
    g = graph(script(1), project="nan")
    g["7"]["inputs"]["temperature"] = float("nan")
    g["11"]["inputs"]["cfg"] = float("nan")
    g["13"] = {"class_type": "ShotAnimate", "inputs": {"keyframes": ["11", 0], "script": ["2", 0], "backend": "animatic",
                                                       "fps": float("nan"), "frames_per_clip": 25, "project_name": "nan",
                                                       "seed": 0, "steps": 2, "cfg": 3.0, "sampler_name": "euler",
                                                       "scheduler": "simple"}}
    result = host.run(g)
    assert not result.valid
    assert "temperature: nan is not a number" in str(result.input_errors("7")), result.input_errors("7")
    assert "cfg: nan is not a number" in str(result.input_errors("11")), result.input_errors("11")
    assert "fps: nan is not a number" in str(result.input_errors("13")), result.input_errors("13")
    g = graph(script(1), project="nan")
    g["11"]["inputs"]["width"] = 17
    assert "width: 17 is not a multiple of 8" in str(host.run(g).input_errors("11"))
    g = graph(script(1), project="nan")
    g["11"]["inputs"].update(start_percent=0.9, end_percent=0.1)
    errors = host.run(g).input_errors("11")
    assert "end_percent (0.1) is before start_percent (0.9)" in errors["end_percent"], errors
    assert [name for name, text in errors.items() if "is before" in text] == ["end_percent"], errors
    assert "model" not in errors and "storyboard" not in errors, errors
