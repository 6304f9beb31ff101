"""The benchmarks that need no host run at their smallest setting, in a fresh interpreter, to their ratio line.

The README's benchmark table quotes their figures; a benchmark that no longer starts (``planner_train_step.py``
did, after ``build_sequence`` gained scheduled sampling's token inputs and the reference it swaps in did not)
would leave those figures unreproducible without any test noticing. The benchmarks that need the ComfyUI host are
too slow for the suite even at their smallest settings (20-40 s each); their code paths are the host tests'.
"""

from __future__ import annotations

import pytest

CORE_BENCHMARKS = {
    "python benchmarks/planner_train_step.py --steps 1 --keyframes 4": "batched / row by row:",
    "python benchmarks/manifest_updates.py --sizes 5 10 --updates 5 --rounds 1 --whole-updates 2": "ratio 10 / 5 keyframes:",
    "python benchmarks/fit_state_cost.py --layout tiny": "share of the training time spent saving:",
    "python benchmarks/sentence_encoding.py --films 2": "shortest first / in script order:",
}


@pytest.mark.parametrize("command", list(CORE_BENCHMARKS))
def test_core_benchmark_runs_to_its_ratio(fresh_python, command):
    proc = fresh_python.run(command, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(CORE_BENCHMARKS[command]), proc.stdout[-2000:]
    float(last[len(CORE_BENCHMARKS[command]):].split()[0])  # the ratio is a number
