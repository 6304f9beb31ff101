"""The toy demo's time with one and with two torch threads, on an idle machine and beside a CPU-bound process.

    python benchmarks/toycinema_demo_threads.py [--repeats 1] [--comfyui ~/ComfyUI]

Each run is the README's command (``python cli/toycinema_demo.py``) in its own process with a fresh output
folder (nothing reused), timed by the demo itself (its last line: the whole run and the part spent loading
ComfyUI). The load is one Python process spinning on one core, started before the run and stopped after it:
what a second job, a browser or an IDE indexing does to a two-core machine. Ratios are measured side by side
in this one run. Why the demo defaults to one thread: ``moviedreamer_core/threads.py``.
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
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402
SPIN = "import time\nend = time.time() + 1800\nwhile time.time() < end:\n    pass\n"


def demo_seconds(threads: int, comfyui: str | None) -> tuple[float, float]:
    """``(whole run, loading)`` seconds of one demo run."""
    with tempfile.TemporaryDirectory(prefix="demo_threads_") as out:
        argv = [sys.executable, "cli/toycinema_demo.py", "--threads", str(threads), "--output-dir", out]
        if comfyui:
            argv += ["--comfyui", comfyui]
        proc = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the demo failed:\n{proc.stderr[-3000:]}")
    found = re.search(r"\(([\d.]+) s, ([\d.]+) s of it loading", proc.stdout)
    return float(found.group(1)), float(found.group(2))


def measure(threads: int, loaded: bool, repeats: int, comfyui: str | None) -> tuple[float, float]:
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if loaded else None
    try:
        runs = [demo_seconds(threads, comfyui) for _ in range(repeats)]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=whole_number(1), default=1, help="runs per setting (the median is reported)")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="the ComfyUI folder")
    args = parser.parse_args()
    results = {}
    for loaded in (False, True):
        for threads in (1, 2):
            results[threads, loaded] = measure(threads, loaded, args.repeats, args.comfyui)
            total, loading = results[threads, loaded]
            print(f"threads {threads}, {'beside a CPU-bound process' if loaded else 'idle machine':27s}: "
                  f"{total:6.1f} s ({loading:.1f} s loading ComfyUI, {total - loading:.1f} s making the movie)", flush=True)
    idle1, busy1, idle2, busy2 = (results[1, False][0], results[1, True][0], results[2, False][0], results[2, True][0])
    print(f"two threads / one thread: idle {idle2 / idle1:.2f}, busy {busy2 / busy1:.2f}")
    print(f"busy / idle: one thread {busy1 / idle1:.2f}, two threads {busy2 / idle2:.2f}")


if __name__ == "__main__":
    main()
