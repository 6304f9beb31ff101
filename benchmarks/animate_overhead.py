"""ShotAnimate against the host's plain image-to-video graph, side by side in one run (not a test).

Plain: ``WanImageToVideo`` -> sampler -> VAE decode, frames left in memory. Ours: the same model, settings and
clip through ShotAnimate's Wan backend, streamed into an MP4 in a movie project folder with its manifest,
then assembled. The model is a tiny Wan 2.1 i2v with the real (fixed-size) Wan VAE, so the VAE dominates
as it does with real models at small sizes. Prints the overhead ratio; target <= 1.10.

Needs a ComfyUI host: ``COMFYUI_PATH=~/ComfyUI python benchmarks/animate_overhead.py [--frames 17] [--size 64]``
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=whole_number(1), default=17, help="frames of the shot (one clip: 4k+1)")
    parser.add_argument("--size", type=whole_number(1), default=64)
    parser.add_argument("--steps", type=whole_number(1), default=4)
    args = parser.parse_args()
    with host_or_skip() as host:
        if host is None:
            return
        import comfy.sd
        import numpy as np
        import torch
        from comfy_extras.nodes_wan import WanImageToVideo

        from moviedreamer_core.animate import make_movie
        from moviedreamer_core.project import MovieProject
        from moviedreamer_core.script import load_script

        testing = host.pack_submodule("tests.host.tiny_nodes")
        backends = host.pack_submodule("nodes.i2v_backends")
        hostmod = host.pack_submodule("nodes.host")
        model = comfy.sd.load_diffusion_model_state_dict(testing.tiny_wan_i2v_state_dict(0))
        vae = testing.tiny_wan_vae(0)
        pos, neg = [[torch.randn(1, 8, 4096) * 0.1, {}]], [[torch.zeros(1, 8, 4096), {}]]
        s = args.size
        keyframe = (np.random.default_rng(0).random((s, s, 3)) * 255).astype(np.uint8)
        fps = 8.0
        script = load_script(f"title: Bench\nshots:\n  - id: a\n    scene: x\n    action: y\n    duration: {args.frames / fps}\n")

        def plain():
            p, n, latent = WanImageToVideo.execute(pos, neg, vae, s, s, args.frames, 1,
                                                   start_image=torch.from_numpy(keyframe).float()[None] / 255).args
            samples = hostmod.sample_latent(model, 0, args.steps, 5.0, "euler", "simple", p, n, latent["samples"])
            return vae.decode(samples)

        def ours(i):
            backend = backends.wan_backend(model, vae, pos, neg, steps=args.steps, cfg=5.0, sampler_name="euler",
                                           scheduler="simple", seed=0, size=(s, s))
            return make_movie(MovieProject(str(host.workdir / "out"), f"bench{i}"), script, lambda k: keyframe, fps=fps,
                              frames_per_clip=args.frames, size=(s, s), backend=backend, backend_name="wan")

        with torch.inference_mode():
            plain()  # warm-up
            t0 = time.perf_counter()
            plain()
            t_plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = ours(0)
            t_ours = time.perf_counter() - t0
        print(f"Wan i2v, {args.frames} frames at {s}x{s}, {args.steps} steps (CPU): plain graph {t_plain:.2f} s, "
              f"ShotAnimate {t_ours:.2f} s ({result.frames} frames on disk) -> ratio {t_ours / t_plain:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
