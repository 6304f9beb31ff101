"""Peak memory of making a movie against its number of shots, side by side in one run (not a test).

ShotAnimate streams every shot to its own MP4 and frees it, so peak memory should not grow with the movie's
length (issue target: 24 shots at most 1.2 times 3 shots). Each shot count runs ``make_movie`` in a fresh
process (peak RSS is per process) with the animatic backend, which makes real frames at the given size and
fps without a video model, so what is measured is the pack's own streaming, encoding and assembly.

``python benchmarks/animate_memory.py [--shots 3 12 24 48] [--size 320x192] [--fps 24]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import number, whole_number  # noqa: E402

CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from moviedreamer_core.animate import animatic_backend, make_movie
    from moviedreamer_core.project import MovieProject
    from moviedreamer_core.script import load_script

    n, folder, w, h, fps = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    shots = "".join(f"  - id: s{i}\\n    scene: place {i}\\n    action: [a {i}, b {i}]\\n    duration: 2.5\\n"
                    f"    camera: {['wide', 'medium', 'close_up'][i % 3]}\\n    transition: {['cut', 'dissolve', 'fade'][i % 3]}\\n"
                    for i in range(n))
    script = load_script(f"title: Memory\\nshots:\\n{shots}")
    rng = np.random.default_rng(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # keyframes made on demand, as ShotAnimate reads them from its input batch
    result = make_movie(MovieProject(folder, "memory"), script,
                        lambda i: np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8),
                        fps=fps, frames_per_clip=25, size=(w, h), backend=animatic_backend(fps, (w, h)),
                        backend_name="animatic")
    print(json.dumps({"frames": result.frames, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rss_before_kb": before}))
""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=whole_number(1), nargs="+", default=[3, 12, 24, 48])
    parser.add_argument("--size", default="320x192")
    parser.add_argument("--fps", type=number(0.0, 1000.0, above=True, unit="frames per second"), default=24.0)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rows = []
    for n in args.shots:
        with tempfile.TemporaryDirectory() as folder:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n), folder, str(w), str(h), str(args.fps)],
                                  capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rows.append((n, json.loads(proc.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["rss_kb"]
    print(f"make_movie peak memory against shot count ({w}x{h} at {args.fps:g} fps, animatic backend):")
    for n, r in rows:
        print(f"  {n:3d} shots, {r['frames']:5d} frames: peak RSS {r['rss_kb'] / 1024:7.1f} MB, "
              f"ratio to {rows[0][0]} shots {r['rss_kb'] / base:.2f}")
    worst = max(r["rss_kb"] for _, r in rows) / base
    print(f"largest ratio {worst:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
