"""The toy decoder's training speed: one process with two threads against two one-thread processes, side by side.

Both run the shipped decoder recipe (``nodes/toycinema_train.py --stages decoder``: global batch 16, the same
random draws, so the same training) for ``--steps`` steps on ``--films`` films, alternately, ``--repeats`` times
each; the time is the training loop's own (after the data and the models are built). Prints seconds per step of
each and the speed-up of two processes (``toycinema/data_parallel.py``). Target: >= 1.15 on two cores.

    COMFYUI_PATH=~/ComfyUI python benchmarks/toycinema_decoder_processes.py [--steps 120] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, steps: int, films: int, out: str) -> float:
    cmd = [sys.executable, str(ROOT / "nodes" / "toycinema_train.py"), "--stages", "decoder", "--out", out,
           "--films", str(films), "--decoder-steps", str(steps), "--threads", "2", "--processes", str(processes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"decoder: (\d+) s, final loss", proc.stderr)
    if proc.returncode or not found:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return int(found.group(1)) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--films", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    if not os.environ.get("COMFYUI_PATH"):
        print("skipped: set COMFYUI_PATH to a ComfyUI checkout")
        return
    times: dict[int, list] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="toycinema_dp_") as out:
        for _ in range(args.repeats):
            for processes in (1, 2):
                times[processes].append(run(processes, args.steps, args.films, out))
                print(f"{processes} process(es): {times[processes][-1]:.3f} s/step", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"\ndecoder training, global batch 16, {args.steps} steps: one process x 2 threads {one:.3f} s/step, "
          f"two processes x 1 thread {two:.3f} s/step: speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
