"""What keeping a renderer training's state costs (``moviedreamer_core/renderer/fit_state.py``), side by side.

The state of an SD1.5-size renderer (the adapter of ``render_overhead.py``'s SD1.5 layout with identity tokens: its
weights and AdamW's two moments, float32) is saved the way the training saves it, one tensor at a time
(``safetensors_stream``), and the way ``safetensors.torch.save_file`` would, each in its own process. Printed:

* the extra memory of a save (peak RSS over the process's RSS before it) against the state's size. A training on a
  GPU holds its state in GPU memory; the library's writer needs every tensor in CPU memory at once, the stream one at a
  time. Here the tensors are transposed views, which, like GPU tensors, must each be copied before they are written.
* the time of a save against the interval the training waits between saves (``SAVE_EVERY_SECONDS``, or
  ``SAVE_COST_FACTOR`` times the save's time when that is longer): the share of training time spent saving
  (target <= 0.02).

Run: ``python benchmarks/fit_state_cost.py [--layout sd15|sdxl]`` (``sdxl``: an 8.3 GB state; needs that much free disk
and about 20 GB of memory, for the library's writer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.safetensors_stream import save_streaming
writer, path, layout = sys.argv[2], sys.argv[3], sys.argv[4]
dims, context, tokens = {"sdxl": ([640] * 4 + [1280] * 60 + [640] * 6, 2048, 1280),
                         "sd15": ([320] * 5 + [640] * 5 + [1280] * 6, 768, 1024),
                         "tiny": ([32] * 4, 64, 32)}[layout]
torch.manual_seed(0)
adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": tokens},
                                         context_dim=context, layer_dims=dims, context_tokens=4,
                                         identity_space={"encoder": "insightface_antelopev2", "dim": 512}, identity_tokens=4))
state = []
for name, p in adapter.state_dict().items():  # weights, exp_avg, exp_avg_sq: as stored, transposed views of them
    for part in ("w", "m", "v"):
        t = p.detach().clone() if p.ndim < 2 else p.detach().t().contiguous().t()
        state.append((f"{part}.{name}", t))
size = sum(t.numel() * t.element_size() for _, t in state)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
import threading
before = rss()
peak, done = [before], threading.Event()
def watch():  # the process's peak RSS during the save (ru_maxrss would include the set-up's own peak)
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
watcher = threading.Thread(target=watch)
watcher.start()
t0 = time.perf_counter()
if writer == "stream":
    save_streaming(state, path)
else:
    from safetensors.torch import save_file
    save_file({n: t.contiguous() for n, t in state}, path)
seconds = time.perf_counter() - t0
done.set()
watcher.join()
print(json.dumps({"size": size, "extra": max(peak[0], rss()) - before, "seconds": seconds}))
"""


def measure(writer: str, layout: str) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), writer, str(Path(work) / "state.safetensors"),
                              layout], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the {writer} writer's process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=["sd15", "sdxl", "tiny"], default="sd15",
                        help="the UNet layout of the renderer: sd15 (a 538 MB state), sdxl (8.3 GB: needs that much free "
                        "disk and about 20 GB of memory for the library's writer), tiny (a test's)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from moviedreamer_core.training_state import SAVE_COST_FACTOR, SAVE_EVERY_SECONDS

    stream, library = measure("stream", args.layout), measure("library", args.layout)
    mb = 2 ** 20
    print(f"{args.layout} renderer training state: {stream['size'] / mb:.1f} MB")
    print(f"extra memory of a save: streamed {stream['extra'] / mb:.0f} MB, safetensors.save_file "
          f"{library['extra'] / mb:.0f} MB -> {stream['extra'] / max(library['extra'], 1):.3f}")
    interval = max(SAVE_EVERY_SECONDS, SAVE_COST_FACTOR * stream["seconds"])
    print(f"share of the training time spent saving: {stream['seconds'] / interval:.4f} (a save {stream['seconds']:.2f} s "
          f"every {interval:.0f} s; target <= 0.02; save_file {library['seconds']:.2f} s)")


if __name__ == "__main__":
    main()
