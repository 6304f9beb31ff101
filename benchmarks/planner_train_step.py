"""A planner training step: the batched teacher-forced sequence vs. assembling it row by row.

``KeyframePlanner.build_sequence`` builds a story's training sequence with one projection per kind of element
and one gather; assembling the same rows keyframe by keyframe (``embed_condition`` + ``embed_tokens``, as
generation does) gives a few dozen small tensors per keyframe, and for a small planner the step is then mostly
autograd bookkeeping. Both paths give the same rows (tests/core/test_planner.py); this script times a whole
training step (forward, backward, optimiser) of the ``tiny`` planner on batches of toy-sized stories (16
stories of 20 keyframes, 6 characters, identity randomisation and history masking on), one thread, side by side,
and prints the ratio.

Run: ``python benchmarks/planner_train_step.py [--steps 30] [--threads 1]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=whole_number(1), default=30)
    parser.add_argument("--threads", type=whole_number(1), default=1)
    parser.add_argument("--keyframes", type=whole_number(1), default=20)
    args = parser.parse_args()
    import torch

    from moviedreamer_core.planner import KeyframePlanner, preset
    from moviedreamer_core.planner.inputs import Story

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spaces = dict(text_space={"encoder": "bench", "dim": 384}, identity_space={"encoder": "bench", "dim": 32},
                  token_space={"source": "bench", "K": 2, "D": 16})
    model = KeyframePlanner(preset("tiny", **spaces)).train()
    g = torch.Generator().manual_seed(0)

    def story() -> Story:
        n = args.keyframes
        return Story(style=torch.randn(384, generator=g), descriptions=torch.randn(6, 384, generator=g),
                     identity_banks=[torch.nn.functional.normalize(torch.randn(3, 32, generator=g), dim=1) for _ in range(6)],
                     keyframe_text=torch.randn(n, 3, 384, generator=g),
                     keyframe_characters=[tuple(range(i % 3, i % 3 + 1 + i % 2)) for i in range(n)],
                     tokens=torch.randn(n, 2, 16, generator=g))

    batches = [[story() for _ in range(16)] for _ in range(4)]

    def step(stories, opt):  # the trainer's step: KeyframePlanner.loss, backward, optimiser
        loss = model.loss(stories)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timings = {}
    for name, row_by_row in (("batched (build_sequence)", False), ("row by row", True)):
        if row_by_row:  # the same loss with the reference assembly in place of build_sequence
            model.build_sequence = model.build_sequence_row_by_row
        step(batches[0], opt)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.steps):
            step(batches[i % len(batches)], opt)
        timings[name] = (time.perf_counter() - t0) / args.steps
        print(f"{name:26s} {1000 * timings[name]:8.1f} ms per training step (16 stories x {args.keyframes} keyframes, "
              f"{args.threads} thread(s))")
    del model.build_sequence
    batched, rows = timings.values()
    print(f"batched / row by row: {batched / rows:.2f}")


if __name__ == "__main__":
    main()
