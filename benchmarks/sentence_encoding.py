"""Sentence embeddings with the built-in MiniLM encoder, batched shortest first against batched in script order.

``sentence_encoders.transformers_text_encoder`` pads each batch only to its own longest sentence and sorts the
sentences by length first (``length_batches``), so a script's short scene lines are not padded to its long action
lines. Measured side by side in one run on the distinct sentences of toy films (scene, action and mention lines, the
dataset builder's and ScriptEncode's load): the encoder as it is (``length_batches``) and the same weights run over
batches in the order given (what it did before); printed, the largest difference between the two (float rounding:
every padded place is masked) and the time ratio.

Run: ``python benchmarks/sentence_encoding.py [--films 68] [--threads 1]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--films", type=whole_number(1), default=68, help="toy films whose distinct sentences are encoded")
    p.add_argument("--threads", type=whole_number(1), default=1, help="torch CPU threads")
    args = p.parse_args(argv)

    import torch

    from moviedreamer_core.sentence_encoders import BATCH, transformers_text_encoder
    from moviedreamer_core.toycinema import generate_films
    from moviedreamer_core.toycinema.planner_data import script_sentences

    torch.set_num_threads(args.threads)
    encoder = transformers_text_encoder("minilm")
    films = generate_films(0, args.films)
    texts = list(dict.fromkeys(s for film in films for s in script_sentences(film, names="per_film")))
    tokenizer, model = _inner()

    @torch.no_grad()
    def in_order(texts):  # the encoder before length_batches: consecutive batches, each padded to its longest
        rows = []
        for i in range(0, len(texts), BATCH):
            batch = tokenizer(texts[i:i + BATCH], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1))
        return torch.cat(rows)

    encoder.encode(texts[:BATCH])  # warm-up
    t0 = time.perf_counter()
    plain = in_order(texts)
    t1 = time.perf_counter()
    sorted_ = encoder.encode(texts)
    t2 = time.perf_counter()
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    print(f"{len(texts)} distinct sentences of {args.films} toy films, {min(lengths)}-{max(lengths)} tokens, "
          f"batches of {BATCH}, {args.threads} thread(s)")
    print(f"in script order: {t1 - t0:.2f} s; shortest first: {t2 - t1:.2f} s; "
          f"largest difference {float((plain - sorted_).abs().max()):.1e}")
    print(f"shortest first / in script order: {(t2 - t1) / (t1 - t0):.2f}")
    return 0


def _inner():
    """The built-in encoder's tokenizer and weights, loaded again from the same folder (so the two passes differ only
    in batching)."""
    from transformers import AutoModel, AutoTokenizer

    from moviedreamer_core.sentence_encoders import minilm_folder

    folder = minilm_folder()
    return AutoTokenizer.from_pretrained(folder, local_files_only=True), \
        AutoModel.from_pretrained(folder, local_files_only=True).float().eval()


if __name__ == "__main__":
    sys.exit(main())
