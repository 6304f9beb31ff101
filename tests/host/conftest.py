"""Fixtures for tests that run the real ComfyUI host (see harness.py). Without a host they are skipped
with the reason printed in the summary (tests/conftest.py).

- ``host``: the in-process host with the pack loaded (``InProcessHost``: ``nodes``, ``execution``,
  ``folder_paths``, ``run(prompt) -> RunResult``, ``run_graph(prompt) -> (RunResult, messages)``).
- ``server``: ``main.py`` on a loopback port with only this pack (``ServerHost``: ``get``, ``post_prompt``,
  ``wait_history``, ``websocket()``, ``run(prompt) -> (history entry, websocket messages)``, ``interrupt``).
- ``testing``: the pack's ``tests/host/tiny_nodes.py`` (tiny host models; also ``tests/host/tiny_models.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from moviedreamer_core.renderer import (RendererAdapter, RendererConfig, faceid_state_from_adapter,
                                       ipadapter_state_from_adapter, save_renderer)

from .harness import InProcessHost, ServerHost, find_host

HOST_ROOT, NO_HOST_REASON = find_host()  # tests/conftest.py marks every test here `host` and skips them without one


def tiny_crop_identity(host, testing) -> str:
    """The identity space name ScriptEncode's clip_vision_crop embedder gives the tiny CLIP Vision (seed 0)."""
    fingerprint = host.pack_submodule("nodes.face_embedders").clip_vision_fingerprint(testing.tiny_clip_vision(0))
    return f"clip_vision_crop:comfy.clip_vision.{fingerprint}"


@pytest.fixture(scope="session")
def host(tmp_path_factory) -> InProcessHost:
    """The host in this process with the pack loaded (about 5 s, once per session)."""
    if HOST_ROOT is None:
        pytest.skip(NO_HOST_REASON)
    return InProcessHost(HOST_ROOT, tmp_path_factory.mktemp("comfy_inprocess"))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``main.py`` on a free loopback port with only this pack loaded; stopped at the end of the session."""
    if HOST_ROOT is None:
        pytest.skip(NO_HOST_REASON)
    srv = ServerHost(HOST_ROOT, tmp_path_factory.mktemp("comfy_server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def photos(host):
    """Real face photos in the host's input folder: astronaut.png, hopper.png, coffee.png (no face)."""
    skdata = pytest.importorskip("skimage.data")
    matplotlib = pytest.importorskip("matplotlib")
    inp = Path(host.folder_paths.get_input_directory())
    Image.fromarray(skdata.astronaut()).save(inp / "astronaut.png")
    Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB").save(inp / "hopper.png")
    Image.fromarray(skdata.coffee()).save(inp / "coffee.png")
    return inp


@pytest.fixture(scope="session")
def testing(host):
    """The pack's ``tests/host/tiny_nodes.py`` as the host loaded it: tiny host models (tiny_clip, tiny_sd, ...)."""
    return host.pack_submodule("tests.host.tiny_nodes")


@pytest.fixture(scope="session")
def patching(host):
    return host.pack_submodule("nodes.attention_patch")


@pytest.fixture(scope="session")
def model_dirs(host, testing, patching, tmp_path_factory):
    """models/moviedreamer and models/ipadapter folders holding renderers made for the tiny SD1.5 UNet."""
    fp = host.folder_paths
    md, ip = tmp_path_factory.mktemp("md_models"), tmp_path_factory.mktemp("ip_models")
    layers = patching.discover_cross_attention(testing.tiny_sd(0))
    dims = [l.inner_dim for l in layers]
    torch.manual_seed(0)
    good = RendererAdapter(RendererConfig(
        token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32}, context_dim=64, layer_dims=dims,
        context_tokens=4, identity_space={"encoder": tiny_crop_identity(host, testing), "dim": 32}, identity_tokens=2))
    with torch.no_grad():
        for p in good.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.3)
    save_renderer(good, str(md / "tiny_renderer.safetensors"))
    torch.manual_seed(0)  # the toy cinema's options: slots, "nobody here" fillers, the place term on identity queries
    slots = RendererAdapter(RendererConfig(**{**good.cfg.__dict__, "identity_slots": 3, "identity_empty_slots": True,
                                              "identity_positions": 2}))
    with torch.no_grad():
        for p in slots.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.3)
    save_renderer(slots, str(md / "slots_renderer.safetensors"))
    other = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 16},
                                           context_dim=64, layer_dims=dims))
    save_renderer(other, str(md / "d16_renderer.safetensors"))
    from safetensors.torch import save_file

    plain = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32},
                                           context_dim=64, layer_dims=dims, context_tokens=4))
    save_file(ipadapter_state_from_adapter(plain), str(ip / "tiny_ipadapter.safetensors"))
    plus = RendererAdapter(RendererConfig(
        token_space={"source": "clip_vision.penultimate_hidden_states", "K": 0, "D": 64}, context_dim=64, layer_dims=dims,
        context_tokens=4, resampler=dict(dim=64, depth=1, dim_head=64, heads=1, num_queries=4, embedding_dim=64,
                                         output_dim=64, ff_mult=2)))
    save_file(ipadapter_state_from_adapter(plus), str(ip / "tiny_ipadapter_plus.safetensors"))
    # FaceID plus v2 adapters: identity only, reading the face crops' CLIP Vision states (17 x 64 for the tiny one)
    for name, space in (("tiny_faceid_plus.safetensors", {"encoder": tiny_crop_identity(host, testing), "dim": 32}),
                        ("dlib_faceid_plus.safetensors", {"encoder": "dlib_resnet_v1", "dim": 128}),
                        ("public", {"encoder": "insightface_buffalo_l", "dim": 512})):
        torch.manual_seed(1)
        faceid = RendererAdapter(RendererConfig(
            token_space={"source": "none", "K": 0, "D": 0}, context_dim=64, layer_dims=dims, token_path=False,
            identity_space=space, identity_tokens=4, source="ipadapter-faceid-plusv2",
            identity_projector={"hidden": 48, "shortcut": True, "perceiver": dict(
                dim=64, depth=1, dim_head=64, heads=1, embedding_dim=64, output_dim=64, ff_mult=2)}))
        with torch.no_grad():
            for p in faceid.parameters():
                if p.ndim > 1:
                    p.normal_(0, 0.3)
        if name == "public":
            save_file(faceid_state_from_adapter(faceid), str(ip / "tiny_faceid-plusv2.safetensors"))
        else:
            save_renderer(faceid, str(md / name))
    fp.folder_names_and_paths["moviedreamer"][0].append(str(md))
    fp.folder_names_and_paths["ipadapter"][0].append(str(ip))
    fp.filename_list_cache.clear()
    yield md, ip
    fp.folder_names_and_paths["moviedreamer"][0].remove(str(md))
    fp.folder_names_and_paths["ipadapter"][0].remove(str(ip))
    fp.filename_list_cache.clear()


@pytest.fixture(scope="module")
def tiny_wan_file(host, tmp_path_factory):
    """A tiny Wan 2.1 i2v checkpoint in a diffusion_models folder, loaded by the host's own UNETLoader (the Wan tests
    of test_shot_animate.py and test_signatures.py)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("diffusion_models")
    save_file(host.pack_submodule("tests.host.tiny_nodes").tiny_wan_i2v_state_dict(0), str(folder / "tiny_wan_i2v.safetensors"))
    with host.model_folder("diffusion_models", folder):
        yield "tiny_wan_i2v.safetensors"
