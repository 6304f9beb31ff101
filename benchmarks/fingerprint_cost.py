"""What fingerprinting the models costs IdentityDiffusionRender, against one keyframe's render, side by side in one
run (not a test).

Before it renders, the node fingerprints everything that determines a keyframe (``nodes/model_fingerprints.py``):
the MODEL, the VAE, the text encoder and the renderer by their weights (sampled) and patches. This builds full-size
SD1.5 models with random weights (same tensors and sizes as the real files: UNet 860 M parameters, CLIP-L 123 M, the
SD VAE 84 M) and an IP-Adapter-sized renderer, then times

* the fingerprints the first time (nothing cached: a model just loaded),
* the fingerprints again (a rerun of a loaded model: its weights' digest is cached),
* one keyframe's render: the host's sampler with the renderer patched in, and the VAE decode.

Issue target: the fingerprints cost under 2% of one keyframe's render. The render here is small (``--size 256
--steps 4``, CPU); a real one (512 px, 25 steps) takes far longer, so the printed ratio is an upper bound.

Needs a ComfyUI host: ``COMFYUI_PATH=~/ComfyUI python benchmarks/fingerprint_cost.py [--size 256] [--steps 4]``
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
from benchmarks.render_overhead import sd15_size_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=whole_number(1), default=256)
    parser.add_argument("--steps", type=whole_number(1), default=4)
    parser.add_argument("--repeats", type=whole_number(1), default=3)
    args = parser.parse_args()
    with host_or_skip() as host:
        if host is None:
            return
        import comfy.ldm.models.autoencoder
        import comfy.sd
        import comfy.sd1_clip
        import comfy.supported_models_base
        import torch

        from moviedreamer_core import fingerprint as core_fingerprint
        from moviedreamer_core.renderer import RendererAdapter, RendererConfig

        patching = host.pack_submodule("nodes.attention_patch")
        hostmod = host.pack_submodule("nodes.host")
        fingerprints = host.pack_submodule("nodes.model_fingerprints")
        torch.manual_seed(0)

        def normal_weights(base):
            with torch.no_grad():
                for p in base.parameters():
                    p.normal_(0, 0.02)

        model = sd15_size_model(host, normal_weights)
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
        clip = comfy.sd.CLIP(target)  # CLIP-L at full size (123 M parameters)
        ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
        vae = comfy.sd.VAE(sd=comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4).state_dict())
        layers = patching.discover_cross_attention(model)
        adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 1024},
                                                 context_dim=768, layer_dims=[l.inner_dim for l in layers], context_tokens=4,
                                                 identity_space={"encoder": "insightface_antelopev2", "dim": 512}, identity_tokens=2))
        managed = hostmod.managed(adapter)
        n_params = sum(p.numel() for m in (model.model, clip.cond_stage_model, vae.first_stage_model, adapter) for p in m.parameters())

        def all_fingerprints():
            return [fingerprints.fingerprint(model), fingerprints.fingerprint(vae), fingerprints.fingerprint(clip),
                    fingerprints.fingerprint((managed, adapter.cfg)), fingerprints.fingerprint("blurry, deformed")]

        def timed(fn, repeats):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            return best

        def first_time():
            core_fingerprint._module_cache.clear()  # as if every model had just been loaded
            all_fingerprints()

        with torch.inference_mode():
            first, cached = timed(first_time, args.repeats), timed(all_fingerprints, args.repeats)
            tokens = adapter.project_tokens(torch.randn(1, 1, 1024))
            ids = adapter.project_identity(torch.randn(1, 512))
            patched = patching.patch_model(model, patching.AdapterState(managed, layers, tokens, tokens * 0, ids, 0.8, 0.8, 1e9, 0.0))
            cond = [[torch.randn(1, 77, 768), {}]]
            uncond = [[torch.zeros(1, 77, 768), {}]]
            latent = torch.zeros(1, 4, args.size // 8, args.size // 8)

            def render():
                samples = hostmod.sample_latent(patched, 0, args.steps, 6.0, "euler", "normal", cond, uncond, latent)
                vae.decode(samples)

            render()  # warm-up
            keyframe = timed(render, 1)
        print(f"SD1.5-size UNet + CLIP-L + SD VAE + renderer: {n_params / 1e6:.0f} M parameters; one keyframe "
              f"{args.size}x{args.size}, {args.steps} steps, cfg 6, with the VAE decode (CPU)")
        print(f"one keyframe's render: {keyframe:.2f} s")
        print(f"fingerprints, first time (models just loaded): {first * 1e3:.1f} ms -> ratio {first / keyframe:.4f} "
              f"(target < 0.02)")
        print(f"fingerprints, models already fingerprinted: {cached * 1e3:.1f} ms -> ratio {cached / keyframe:.4f}")


if __name__ == "__main__":
    main()
