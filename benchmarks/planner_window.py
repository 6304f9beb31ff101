"""Planner cost per keyframe against story length: windowed KV cache vs. naive full recomputation.

Each configuration runs in its own process (so peak memory, ``ru_maxrss``, belongs to it alone) and plans
a story of N keyframes with a small planner; the script prints seconds and peak memory per keyframe and the
ratios that matter:

* windowed: cost per keyframe at N=1000 / at N=10 (target <= 1.2: flat in story length);
* naive (no cache, whole history every step): the same ratio, which grows with N.

Run: ``python benchmarks/planner_window.py [--sizes 10 100 1000] [--naive-max 300]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402


def worker(n: int, naive: bool, window: int) -> dict:
    import torch

    from moviedreamer_core.planner import KeyframePlanner, plan_tokens, preset
    from moviedreamer_core.planner.inputs import Story

    torch.manual_seed(0)
    torch.set_num_threads(1)
    spaces = dict(text_space={"encoder": "bench", "dim": 64}, identity_space={"encoder": "bench", "dim": 32},
                  token_space={"source": "bench", "K": 2, "D": 64})
    model = KeyframePlanner(preset("tiny", **spaces, hidden_size=128, num_layers=4, intermediate_size=256)).eval()
    g = torch.Generator().manual_seed(0)

    def story(length):
        return Story(style=torch.randn(64, generator=g), descriptions=torch.randn(3, 64, generator=g),
                     identity_banks=[torch.randn(2, 32, generator=g) for _ in range(3)],
                     keyframe_text=torch.randn(length, 3, 64, generator=g),
                     keyframe_characters=[(i % 3,) if i % 4 else (0, 1) for i in range(length)])

    kwargs = dict(seed=0, temperature=0.7, guidance=1.5)
    plan_tokens(model, story(5), window=window, use_cache=not naive, **kwargs)  # warm-up
    s = story(n)
    t0 = time.perf_counter()
    plan_tokens(model, s, window=None if naive else window, use_cache=not naive, **kwargs)
    seconds = time.perf_counter() - t0
    return {"n": n, "naive": naive, "s_per_kf": seconds / n, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(n: int, naive: bool, window: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", str(n), str(int(naive)), str(window)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=whole_number(1), nargs="+", default=[10, 100, 1000])
    parser.add_argument("--naive-max", type=whole_number(0), default=300, help="largest story planned naively (it grows quadratically)")
    parser.add_argument("--window", type=whole_number(1), default=16)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), bool(int(args.worker[1])), int(args.worker[2]))))
        return
    for naive in (False, True):
        label = "naive (no cache, full history)" if naive else f"windowed KV cache (W={args.window})"
        rows = [run(n, naive, args.window) for n in args.sizes if not naive or n <= args.naive_max]
        print(label)
        for r in rows:
            print(f"  N={r['n']:5d}: {1000 * r['s_per_kf']:8.2f} ms/keyframe, peak {r['peak_mb']:7.1f} MB")
        first, last = rows[0], rows[-1]
        print(f"  per-keyframe time at N={last['n']} / N={first['n']}: {last['s_per_kf'] / first['s_per_kf']:.2f}; "
              f"peak memory ratio {last['peak_mb'] / first['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
