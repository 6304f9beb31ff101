"""The toy decoder's training step with the host's two CPU attention kernels, side by side in one process.

    python benchmarks/decoder_attention.py [--steps 20] [--rounds 3] [--threads 2] [--comfyui ~/ComfyUI]

On a machine without a GPU the host picks its sub-quadratic attention (``comfy/ldm/modules/attention.py``:
``attention_sub_quad``, chunked to bound memory) unless it is started with ``--use-pytorch-cross-attention``
(``attention_pytorch``: torch's fused ``scaled_dot_product_attention``). The toy decoder's UNet attends over all
1024 pixels of a 32x32 keyframe in its first level, so the kernel may be a large share of the 33-minute decoder
training (``cli/toycinema_train.py``, which, like every program in ``cli/``, starts the host with its default flags).

Each round trains a fresh decoder (``cli/toycinema_train.train_decoder``, the shipped recipe, same seed, 16 films)
for ``--steps`` steps once with each kernel, in alternating order; the step time is the median over rounds. The two
kernels compute the same attention: the script also prints the largest difference between the UNet's outputs with
each on one batch. Nothing is changed in the pack: this only measures what switching would buy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402
sys.path.insert(0, str(ROOT / "cli"))

from host_library import comfyui_folder, import_host, import_pack  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=whole_number(1), default=20, help="decoder training steps per run")
    p.add_argument("--rounds", type=whole_number(1), default=3)
    p.add_argument("--threads", type=whole_number(1), default=2)
    p.add_argument("--comfyui", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_host(comfyui_folder(args.comfyui))
    import_pack()
    import torch
    import comfy.ldm.modules.attention as attention

    import toycinema_train as tr

    torch.set_num_threads(args.threads)
    kernels = {"sub_quad (the host's CPU default)": attention.attention_sub_quad,
               "pytorch (--use-pytorch-cross-attention)": attention.attention_pytorch}
    default = attention.optimized_attention
    films = tr.training_films(16)
    ae = tr._pack("moviedreamer_core.toycinema.autoencoder")
    toy = tr._pack("nodes.toycinema_models")
    identity = tr._pack("moviedreamer_core.toycinema.identity")
    embedder = identity.ToyIdentityEmbedder.load(os.path.join(toy.WEIGHTS_DIR, toy.IDENTITY_FILE))
    identities = ae.reference_identities(embedder)

    times: dict[str, list[float]] = {name: [] for name in kernels}
    try:
        for r in range(args.rounds):
            order = list(kernels) if r % 2 == 0 else list(reversed(kernels))
            for name in order:
                attention.optimized_attention = kernels[name]
                with tempfile.TemporaryDirectory(prefix="decoder_attention_") as out:
                    t = time.perf_counter()
                    result = tr.train_decoder(films, identities, out, steps=args.steps, seed=0, log=lambda _msg: None)
                    times[name].append(result["seconds"] / args.steps)
                    print(f"round {r + 1} {name}: {times[name][-1]:.3f} s a step ({time.perf_counter() - t:.0f} s)",
                          flush=True)

        # the same function: one UNet, one batch, both kernels
        model = toy.build_toy_unet(seed=0)
        x = torch.randn(4, 3, 32, 32)
        sigma = torch.full((4,), 1.0)
        outputs = []
        for name, kernel in kernels.items():
            attention.optimized_attention = kernel
            with torch.no_grad():
                outputs.append(model.model.apply_model(x, sigma, c_crossattn=toy.text_context().expand(4, -1, -1)))
        difference = float((outputs[0] - outputs[1]).abs().max())
    finally:
        attention.optimized_attention = default

    base, fast = (statistics.median(times[name]) for name in kernels)
    print(f"\nToy decoder training step, {args.steps} steps x {args.rounds} rounds, {args.threads} thread(s):")
    for name in kernels:
        print(f"  {name}: {statistics.median(times[name]):.3f} s a step (median)")
    print(f"  ratio sub_quad / pytorch: {base / fast:.2f}")
    print(f"  largest difference between the UNet's outputs with each kernel: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
