"""ScriptEncode speed, measured side by side in one run (not a test).

1. Identity: dlib face embedding of reference photos, first time vs. from the on-disk cache (a new cache
   object, as a re-queued prompt sees it). Target: the cached pass costs < 5% of the uncached one.
2. Text (needs a ComfyUI host: COMFYUI_PATH): sentence embeddings of a script through the host's own
   per-prompt call (``CLIP.encode_from_tokens`` once per sentence) vs. our batched pass, on a full-size
   SD1.x CLIP-L text encoder with random weights (same architecture and cost as the real one).

Run: ``python benchmarks/script_encode.py [--sentences 64] [--photos 8]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402

from benchmarks.host_session import host_or_skip  # noqa: E402
from moviedreamer_core.identity.cache import IdentityCache  # noqa: E402
from moviedreamer_core.identity.dlib_embedder import DlibFaceEmbedder  # noqa: E402


def photos(n: int) -> list[np.ndarray]:
    """``n`` distinct real-face photos: the astronaut, slightly rescaled each time (distinct pixels)."""
    from PIL import Image
    try:
        from skimage import data
    except ImportError:  # a test tool (tests/requirements.txt), not one of the pack's requirements
        raise SystemExit("this benchmark takes its photos from scikit-image: install the test tools first "
                         "(python -m pip install -r tests/requirements.txt, README: Tests)") from None

    base = Image.fromarray(data.astronaut())
    return [np.asarray(base.resize((400 + 8 * i, 400 + 8 * i))) for i in range(n)]


def bench_identity(n: int) -> None:
    images = photos(n)
    embedder = DlibFaceEmbedder()
    embedder.embed(images[0])  # load the models outside the timing
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        IdentityCache(root).get_or_compute_many(embedder, images)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = IdentityCache(root)
        cache.get_or_compute_many(embedder, images)
        warm = time.perf_counter() - t0
    print(f"identity, {n} photos (dlib, CPU): uncached {cold:.3f} s, cached {warm:.4f} s "
          f"-> cached/uncached = {warm / cold:.4f} ({cache.hits} hits)")


def bench_text(n: int) -> None:
    with host_or_skip("text: ") as host:
        if host is None:
            return
        import comfy.sd
        import comfy.sd1_clip
        import comfy.supported_models_base

        testing = host.pack_submodule("tests.host.tiny_nodes")
        text_encoding = host.pack_submodule("nodes.text_encoding")
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
        clip = comfy.sd.CLIP(target)  # full-size CLIP-L (123 M parameters)
        testing.reinit_(clip.cond_stage_model, seed=0)
        sentences = [f"Shot {i}: Ava walks through the rain towards the lighthouse number {i}." for i in range(n)]
        encoder = text_encoding.host_text_encoder(clip)
        import torch

        with torch.no_grad():
            t0 = time.perf_counter()
            for s in sentences:
                clip.encode_from_tokens(clip.tokenize(s), return_pooled=True)
            one_by_one = time.perf_counter() - t0
            t0 = time.perf_counter()
            encoder.encode(sentences)
            batched = time.perf_counter() - t0
        print(f"text, {n} sentences (CLIP-L, CPU): host one by one {one_by_one:.2f} s, batched {batched:.2f} s "
              f"-> batched/one-by-one = {batched / one_by_one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=whole_number(1), default=64)
    parser.add_argument("--photos", type=whole_number(1), default=8)
    args = parser.parse_args()
    bench_identity(args.photos)
    bench_text(args.sentences)


if __name__ == "__main__":
    main()
