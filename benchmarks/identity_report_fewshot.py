"""The identity report in the toy cinema: does giving the planner its few-shot references change who is on screen?

    python benchmarks/identity_report_fewshot.py                       # 16 development films, the shipped planner
    python benchmarks/identity_report_fewshot.py --films-seed test     # 32 films of the test set
    python benchmarks/identity_report_fewshot.py --train-references    # also a planner trained with references

MovieDreamer's few-shot mode gives the planner each character's *reference tokens* (their photos through the keyframe
tokenizer) beside the identity embeddings (paper section 3.3; ``planner/model.py``'s ``REF`` header rows,
ARKeyframePlanner's ``few_shot_references``). This plans toy films with and without them, renders every keyframe with
the shipped decoder and identity renderer, and reads each keyframe with the per-keyframe identity report
(``moviedreamer_core/identity_report.py``) through the toy identity embedder, as IdentityDiffusionRender does for a
user's movie. Per row: the share of on-screen characters found, missing, drawn twice (doubled) and nearer to
somebody else's references, their mean similarity when found, extra faces per keyframe, flagged keyframes, and the
report's own time per keyframe. The ground-truth keyframes' row is the report's own error.

The shipped toy planner was trained *without* references (its dataset's ``references`` option is off:
``toycinema/planner_data.py``), so its "with references" row shows what unseen header rows do to it, not what
few-shot planning can do; ``--train-references`` trains the same planner recipe on a dataset with references (into
``--work``, reused on the next run; about as long as the shipped planner's training) and adds its two rows.

Models, films and decoding are the method benchmark's (``benchmarks/toycinema.py``: ``Bench``, ``--films-seed``,
``--steps``, ``--cfg``); this script adds only the planning switch and the report. The last line printed is one JSON
object: per row the ``summarise`` figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK / "benchmarks"))
import toycinema as method  # noqa: E402  (benchmarks/toycinema.py: the toy models, films, decoding)

COLUMNS = {"found": "found", "missing": "missing", "doubled": "doubled", "closer to someone else": "closer_to_other",
           "mean similarity (found)": "mean_similarity", "extra faces / keyframe": "extra_faces_per_keyframe",
           "flagged keyframes": "flagged_keyframes", "report ms / keyframe": "report_ms"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=None)
    p.add_argument("--films-seed", default="dev", help="dev (the default), test, or any integer seed (as benchmarks/toycinema.py)")
    p.add_argument("--films", type=method.whole_number(1, method.MAX_FILMS), default=None, help="films to score (default: 16 of dev, 32 otherwise)")
    p.add_argument("--threads", type=method.whole_number(1, method.MAX_THREADS), default=None, help="torch CPU threads (default: $MOVIEDREAMER_THREADS, else one)")
    p.add_argument("--steps", type=method.whole_number(1), default=20, help="sampling steps per keyframe")
    p.add_argument("--cfg", type=method.number(0.0, 100.0), default=2.0, help="guidance scale")
    p.add_argument("--train-references", action="store_true",
                   help="also train (or reuse from --work) a planner on a dataset with reference tokens and score it")
    p.add_argument("--work", default=os.path.expanduser("~/.cache/moviedreamer/identity_report_fewshot"),
                   help="where --train-references writes its dataset and planner")
    p.add_argument("--train-films", type=method.whole_number(1), default=300, help="training films of --train-references (as the shipped planner)")
    p.add_argument("--planner-steps", type=method.whole_number(1), default=None, help="--train-references: default the shipped planner's budget")
    p.add_argument("--json", type=method.output_file, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    # the method benchmark's own argument rules (films seed, film counts) and the fields its Bench reads
    shared = ["--films-seed", str(args.films_seed), "--steps", str(args.steps), "--cfg", str(args.cfg),
              "--train-films", str(args.train_films), "--skip-ablations"]
    shared += ["--films", str(args.films)] if args.films is not None else []
    shared += ["--comfyui", args.comfyui] if args.comfyui else []
    bench_args = method.parse_args(shared)
    return args, bench_args


def reference_planner(bench, args) -> str:
    """The shipped planner's recipe trained on a dataset with the characters' reference tokens (``--work``)."""
    work = Path(args.work)
    data = method.ensure_dataset(bench, work / "data_references", references=True, log=None)
    return method.ensure_planner(bench, data, work / "planner_references", "trained with references", args.planner_steps,
                                 variant="full")


def report_row(bench, checkers, frames_per_film) -> dict:
    """``summarise`` of every keyframe's report, plus the report's time per keyframe in milliseconds."""
    ir = method._pack("moviedreamer_core.identity_report")
    reports, started = [], time.perf_counter()
    for checker, frames in zip(checkers, frames_per_film):
        reports += [checker.report(k, image) for k, image in enumerate(frames)]
    seconds = time.perf_counter() - started
    return {**ir.summarise(reports), "report_ms": 1000 * seconds / max(len(reports), 1)}


def main(argv=None) -> int:
    args, bench_args = parse_args(argv)
    method.import_host(method.comfyui_folder(bench_args.comfyui))
    method.import_pack()
    import numpy as np
    import torch

    threads = method._pack("moviedreamer_core.threads")
    torch.set_num_threads(threads.configured_threads(args.threads, default=threads.SMALL_MODEL_THREADS))
    started = time.perf_counter()
    bench = method.Bench(bench_args)
    pd, ir = method._pack("moviedreamer_core.toycinema.planner_data"), method._pack("moviedreamer_core.identity_report")
    # the report reads each film's script as ScriptEncode makes it (world names: the report's names are labels only)
    checkers = [ir.KeyframeChecker(pd.film_embeds(f, bench.text, bench.embedder), bench.embedder) for f in bench.films]
    rows = {"ground truth keyframes": report_row(bench, checkers, [np.asarray(f.images(32)) for f in bench.films])}
    planners = {"shipped planner": bench.planner_path}
    if args.train_references:
        planners["planner trained with references"] = reference_planner(bench, args)
    for name, planner in planners.items():
        for references in (False, True):
            row = f"{name}, {'with' if references else 'without'} references"
            method._log(f"planning and decoding: {row}")
            tokens = bench.runs.plan_films(planner, bench.films, bench.text, bench.embedder, bench.tokenizer.token_encoder(),
                                           names="per_film", references=references)
            rows[row] = report_row(bench, checkers, bench.frames(tokens))
    seconds = time.perf_counter() - started

    keyframes = sum(f.n_keyframes for f in bench.films)
    print(f"\nIdentity report, toy cinema: {len(bench.films)} films of seed {bench_args.films_seed} ({bench_args.films_set}), "
          f"{keyframes} keyframes, {args.steps} sampling steps at cfg {args.cfg}; toy identity embedder, threshold "
          f"{checkers[0].threshold:g} ({seconds:.0f} s, {torch.get_num_threads()} thread(s))\n")
    print("| keyframes | on-screen characters | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for row, s in rows.items():
        cells = [("-" if s[k] is None else (f"{s[k]:.1f}" if k == "report_ms" else f"{s[k]:.2f}")) for k in COLUMNS.values()]
        print(f"| {row} | {s['characters']} | " + " | ".join(cells) + " |")
    summary = {"films_seed": bench_args.films_seed, "films_set": bench_args.films_set, "films": len(bench.films),
               "keyframes": keyframes, "steps": args.steps, "cfg": args.cfg, "threshold": checkers[0].threshold,
               "seconds": round(seconds, 1),
               "rows": {row: {k: (None if v is None else round(float(v), 4)) for k, v in s.items()} for row, s in rows.items()}}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary))  # the last line: one JSON object
    return 0


if __name__ == "__main__":
    sys.exit(main())
