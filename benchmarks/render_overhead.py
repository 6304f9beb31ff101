"""IdentityDiffusionRender's sampling cost against the host's plain KSampler, side by side in one run.

Same UNet (the full SD1.5 architecture with random weights: same cost as the real one), same steps, size,
sampler and seed; "ours" adds the renderer adapter to every cross-attention layer (4 token context tokens and
2 identity tokens, the sizes of an IP-Adapter FaceID setup). Prints the ratio; target <= 1.15.

Needs a ComfyUI host: ``COMFYUI_PATH=~/ComfyUI python benchmarks/render_overhead.py [--size 256] [--steps 4]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402

from benchmarks.host_session import host_or_skip  # noqa: E402

SD15_UNET = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                 adm_in_channels=None, in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
                 use_linear_in_transformer=False, context_dim=768, num_heads=8, num_head_channels=-1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])


def sd15_size_model(host, init=None):
    """An SD1.5-size UNet in the host's own ``BaseModel`` under the host's model management (``nodes/host.py``
    ``managed``); ``init(base)`` sets its random weights (default: the test builders' ``reinit_``, seed 0)."""
    import comfy.model_base
    import torch

    testing = host.pack_submodule("tests.host.tiny_nodes")
    cfg = testing._TinyUNetConfig(dict(SD15_UNET, dtype=torch.float32))
    cfg.unet_config.update(num_heads=8, num_head_channels=-1)
    base = comfy.model_base.BaseModel(cfg, device="cpu")
    (init or (lambda m: testing.reinit_(m, 0)))(base)
    return host.pack_submodule("nodes.host").managed(base)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=whole_number(1), default=256)
    parser.add_argument("--steps", type=whole_number(1), default=4)
    parser.add_argument("--repeats", type=whole_number(1), default=2)
    args = parser.parse_args()
    with host_or_skip() as host:
        if host is None:
            return
        import torch

        from moviedreamer_core.renderer import RendererAdapter, RendererConfig

        patching = host.pack_submodule("nodes.attention_patch")
        hostmod = host.pack_submodule("nodes.host")
        model = sd15_size_model(host)
        layers = patching.discover_cross_attention(model)
        adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 1024},
                                                 context_dim=768, layer_dims=[l.inner_dim for l in layers], context_tokens=4,
                                                 identity_space={"encoder": "insightface_antelopev2", "dim": 512}, identity_tokens=2))
        managed = hostmod.managed(adapter)
        with torch.no_grad():
            tokens = adapter.project_tokens(torch.randn(1, 1, 1024))
            ids = adapter.project_identity(torch.randn(1, 512))
        state = patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 0.8, 0.8, 1e9, 0.0)
        ours = patching.patch_model(model, state)
        cond = [[torch.randn(1, 77, 768), {}]]
        uncond = [[torch.zeros(1, 77, 768), {}]]
        latent = torch.zeros(1, 4, args.size // 8, args.size // 8)

        def timed(m):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                hostmod.sample_latent(m, 0, args.steps, 6.0, "euler", "normal", cond, uncond, latent)
                best = min(best, time.perf_counter() - t0)
            return best

        with torch.inference_mode():
            timed(model)  # warm-up
            plain, patched = timed(model), timed(ours)
        print(f"{len(layers)} cross-attention layers, {args.size}x{args.size}, {args.steps} steps, cfg 6 (CPU)")
        print(f"plain KSampler path: {plain:.2f} s; with the renderer adapter: {patched:.2f} s "
              f"-> ratio {patched / plain:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
