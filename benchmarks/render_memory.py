"""Peak memory of a whole movie through IdentityDiffusionRender and ShotAnimate against its number of keyframes, at
832x480, side by side in one run (not a test).

Each count runs in a fresh process (peak RSS is per process) that loads the host in-process and queues the nodes'
own graph: ScriptEncode (one keyframe per shot) -> the zero-shot planner -> IdentityDiffusionRender on a tiny SD
UNet (cross-attention at its second level only) and a small SD-style VAE at 832x480, one step with ``images_output`` preview -> ShotAnimate (animatic) reading the keyframes from the
project folder through ``keyframe_set``. Issue target: peak RSS at 1000 keyframes at most 1.3 times that at 50.
``--images-output all`` runs the old wiring (every keyframe in one IMAGE batch into ShotAnimate's ``keyframes``)
for comparison: 1000 keyframes at 832x480 are 4.8 GB of float32.

Needs a ComfyUI host: ``COMFYUI_PATH=~/ComfyUI python benchmarks/render_memory.py [--counts 50 1000]
[--size 832x480] [--images-output preview]`` (1000 keyframes take some minutes on a CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
n, work, w, h, images_output = int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
from tests.host.harness import InProcessHost
host = InProcessHost(Path(os.environ["COMFYUI_PATH"]).expanduser(), work)
import numpy as np
import torch
from PIL import Image
from moviedreamer_core.renderer import RendererAdapter, RendererConfig, save_renderer
testing = host.pack_submodule("tests.host.tiny_nodes")
patching = host.pack_submodule("nodes.attention_patch")
models = work / "models_moviedreamer"
models.mkdir()
layers = patching.discover_cross_attention(testing.tiny_sd(0, layout="sd15_low_attention"))
torch.manual_seed(0)
adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32},
                                         context_dim=64, layer_dims=[l.inner_dim for l in layers], context_tokens=4))
save_renderer(adapter, str(models / "bench_renderer.safetensors"))
host.folder_paths.folder_names_and_paths["moviedreamer"][0].append(str(models))
host.folder_paths.filename_list_cache.clear()
yy, xx = np.mgrid[0:256, 0:256]
Image.fromarray(np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)).save(work / "input" / "ava.png")
shots = "".join(f"  - id: s{i}\n    scene: room {i % 7}\n    action: Ava does thing {i}.\n    characters: [Ava]\n"
                f"    duration: 1\n    camera: {['wide', 'medium', 'close_up'][i % 3]}\n" for i in range(n))
text = f"title: Memory {n}\ncharacters:\n  - name: Ava\n    description: a woman in a green coat\n    references: [ava.png]\nshots:\n{shots}"
g = {
    "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
    "5": {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}},
    "9": {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": 0, "fast_at_large_sizes": True}},
    "2": {"class_type": "ScriptEncode", "inputs": {"script": text, "script_file": "(none: use the text above)",
                                                    "clip": ["1", 0], "face_embedder": "clip_vision_crop", "clip_vision": ["5", 0]}},
    "6": {"class_type": "MovieDreamerPlannerLoader", "inputs": {"planner_name": "(zero-shot prior: no planner file)"}},
    "7": {"class_type": "ARKeyframePlanner", "inputs": {"planner": ["6", 0], "script_embeds": ["2", 1], "seed": 0,
                                                         "temperature": 1.0, "guidance": 1.0, "context_window": 4,
                                                         "few_shot_references": True}},
    "10": {"class_type": "MovieDreamerRendererLoader", "inputs": {"renderer_name": "bench_renderer.safetensors"}},
    "11": {"class_type": "IdentityDiffusionRender", "inputs": {
        "model": ["9", 0], "vae": ["9", 1], "renderer": ["10", 0], "storyboard": ["7", 0], "script_embeds": ["2", 1],
        "seed": 0, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "width": w, "height": h,
        "token_weight": 1.0, "identity_weight": 0.0, "start_percent": 0.0, "end_percent": 1.0, "project_name": "memory",
        "negative_prompt": "", "clip": ["1", 0], "images_output": images_output}},
    "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
    "13": {"class_type": "ShotAnimate", "inputs": {
        "script": ["2", 0], "backend": "animatic", "fps": 2.0, "frames_per_clip": 25, "project_name": "memory",
        "seed": 0, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple"}},
}
g["13"]["inputs"].update({"keyframe_set": ["11", 2]} if images_output == "preview" else {"keyframes": ["11", 0]})
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
result = host.run(g).raise_for_error()
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "loaded_kb": loaded,
                  "seconds": time.perf_counter() - t0, "text": result.outputs["13"]["text"][0]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=whole_number(1), nargs="+", default=[50, 1000])
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--images-output", choices=["preview", "all"], default="preview")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_PATH"):
        print("skipped: set COMFYUI_PATH to a ComfyUI checkout")
        return
    w, h = (int(v) for v in args.size.split("x"))
    rows = []
    for n in args.counts:
        with tempfile.TemporaryDirectory() as work:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n), work, str(w), str(h), args.images_output],
                                  capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{n} keyframes failed:\n{proc.stderr[-3000:]}")
        rows.append((n, json.loads(proc.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["rss_kb"]
    print(f"peak RSS of render + ShotAnimate against the movie's length ({w}x{h}, tiny SD + small VAE, animatic, "
          f"images_output {args.images_output}, each count in its own process):")
    for n, r in rows:
        print(f"  {n:5d} keyframes: peak RSS {r['rss_kb'] / 1024:7.1f} MB (host loaded: {r['loaded_kb'] / 1024:.0f} MB), "
              f"{r['seconds']:.0f} s, ratio to {rows[0][0]}: {r['rss_kb'] / base:.2f}")
    print(f"ratio {rows[-1][0]} / {rows[0][0]} keyframes: {rows[-1][1]['rss_kb'] / base:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
