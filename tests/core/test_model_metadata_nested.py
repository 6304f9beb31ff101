"""A planner or renderer file whose configuration metadata is nested thousands deep is refused by name, as any other
malformed configuration (a ValueError naming the file), not with Python's RecursionError."""

import pytest
import torch
from safetensors.torch import save_file

from moviedreamer_core.planner.checkpoint import METADATA_KEY as PLANNER_KEY, read_planner_config
from moviedreamer_core.renderer.adapter import METADATA_KEY as RENDERER_KEY, read_renderer_config


@pytest.mark.parametrize("key, read", [(PLANNER_KEY, read_planner_config), (RENDERER_KEY, read_renderer_config)])
def test_deeply_nested_configuration_is_refused_by_name(tmp_path, key, read):
    path = tmp_path / "hostile.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={key: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ValueError, match="hostile.safetensors"):
        read(str(path))


@pytest.mark.parametrize("key, read, what", [(PLANNER_KEY, read_planner_config, "planner"),
                                             (RENDERER_KEY, read_renderer_config, "renderer")])
def test_a_file_cut_short_is_refused_by_name(tmp_path, key, read, what):
    whole = tmp_path / "whole.safetensors"
    save_file({"w": torch.zeros(4096)}, str(whole), metadata={key: "{}"})
    cut = tmp_path / "half_download.safetensors"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"{what} file half_download.safetensors .*download"):
        read(str(cut))


@pytest.mark.parametrize("change", ["norm of no width", "slot key not a number", "proj of one dimension",
                                    "to_v missing"])
def test_a_damaged_ip_adapter_file_is_refused_by_name(tmp_path, change):
    from moviedreamer_core.renderer.adapter import load_renderer

    state = {"image_proj.proj.weight": torch.zeros(8, 4), "image_proj.proj.bias": torch.zeros(8),
             "image_proj.norm.weight": torch.zeros(4), "image_proj.norm.bias": torch.zeros(4),
             "ip_adapter.1.to_k_ip.weight": torch.zeros(4, 4), "ip_adapter.1.to_v_ip.weight": torch.zeros(4, 4)}
    if change == "norm of no width":
        state["image_proj.norm.weight"] = state["image_proj.norm.bias"] = torch.zeros(0)
    elif change == "slot key not a number":
        state["ip_adapter.x.to_k_ip.weight"] = state.pop("ip_adapter.1.to_k_ip.weight")
    elif change == "proj of one dimension":
        state["image_proj.proj.weight"] = torch.zeros(8)
    else:
        del state["ip_adapter.1.to_v_ip.weight"]
    path = tmp_path / "odd_ipadapter.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match="odd_ipadapter.safetensors"):
        load_renderer(str(path))
