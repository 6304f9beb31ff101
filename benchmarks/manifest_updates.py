"""Time per manifest update against the movie's length, side by side in one run (not a test).

Every finished keyframe or shot updates the project's manifest. It used to be rewritten whole and fsynced on every
update (quadratic in the movie: 1.4 ms per update at keyframe 100, 45.5 ms at 6000). Now an update appends one line
to ``manifest.journal`` and the whole ``manifest.json`` is written once when the project opens and once at the end of
a run (``moviedreamer_core/project.py``). Issue target: time per update at 5000 keyframes within 1.2 times that at 50.

For each size the project is filled with that many keyframe entries of a realistic size (prompt, seed, shot), then
the next updates are timed (best of ``--rounds`` rounds of ``--updates``). For comparison the previous scheme
(``manifest.json`` rewritten and fsynced on each update) is timed at the same sizes, and the one compaction a run
ends with.

``python benchmarks/manifest_updates.py [--sizes 50 500 5000] [--updates 200] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from moviedreamer_core.argument_types import whole_number  # noqa: E402

from moviedreamer_core.files import atomic_write_bytes  # noqa: E402
from moviedreamer_core.project import MovieProject  # noqa: E402

PROMPT = ("a lighthouse on a cliff at dawn, stormy sea; Ava climbs the steep path towards the lighthouse; Ava: a young "
          "woman with short red hair and a green raincoat; hand-painted watercolour, soft morning light")


def info(k: int) -> dict:
    return {"shot": f"s{k // 3}", "seed": str(1234567 + k), "prompt": PROMPT}


def filled(folder: str, n: int) -> MovieProject:
    project = MovieProject(folder, f"bench{n}")
    for k in range(n):
        project.record_keyframe(k, f"{k:064x}", info(k))
    project.compact()
    return project


def per_update_journal(project: MovieProject, n: int, updates: int, rounds: int) -> float:
    best = float("inf")
    for r in range(rounds):
        t0 = time.perf_counter()
        for j in range(updates):
            k = (j * 7919 + r) % n  # re-render keyframes anywhere in the movie: the manifest keeps its size
            project.record_keyframe(k, f"{k + r + 1:064x}", info(k))
        best = min(best, (time.perf_counter() - t0) / updates)
    return best


def per_update_whole(project: MovieProject, n: int, updates: int) -> float:
    """The previous scheme: the whole manifest rewritten (atomically, fsynced) after each update."""
    t0 = time.perf_counter()
    for j in range(updates):
        k = (j * 7919) % n
        project.manifest["keyframes"][str(k)] = {"status": "done", "file": project.keyframe_file(k),
                                                 "signature": f"{k + 99:064x}", **info(k)}
        atomic_write_bytes(project.manifest_path, json.dumps(project.manifest, indent=1, sort_keys=True).encode())
    return (time.perf_counter() - t0) / updates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=whole_number(1), nargs="+", default=[50, 500, 5000])
    parser.add_argument("--updates", type=whole_number(1), default=200)
    parser.add_argument("--rounds", type=whole_number(1), default=5)
    parser.add_argument("--whole-updates", type=whole_number(1), default=20, help="updates timed with the previous scheme")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            project = filled(folder, n)
            journal = per_update_journal(project, n, args.updates, args.rounds)
            t0 = time.perf_counter()
            project.compact()
            compaction = time.perf_counter() - t0
            whole = per_update_whole(project, n, args.whole_updates)
            rows.append((n, journal, compaction, whole))
    base = rows[0][1]
    print(f"manifest update time against the movie's length (best of {args.rounds} x {args.updates} updates):")
    for n, journal, compaction, whole in rows:
        print(f"  {n:5d} keyframes: journal {journal * 1e3:7.3f} ms per update (ratio to {rows[0][0]}: "
              f"{journal / base:.2f}); whole rewrite as before {whole * 1e3:7.2f} ms; one compaction {compaction * 1e3:6.1f} ms")
    print(f"ratio {rows[-1][0]} / {rows[0][0]} keyframes: {rows[-1][1] / base:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
