"""The programs' numbers are checked where they are parsed: a bad count or seed is an argparse error naming the flag
(exit code 2), never a traceback from numpy or torch, nor the host's refusal of a whole workflow.

Each command runs as a user types it, in a fresh interpreter, without a ComfyUI host: the programs parse their
arguments before they look for one.
"""

from __future__ import annotations

import pytest

#: (command, what stderr must say)
BAD_ARGUMENTS = [
    ("python cli/toycinema_demo.py --film-seed -1", "argument --film-seed: must be at least 0, got -1"),
    ("python cli/toycinema_demo.py --seed 18446744073709551616", "argument --seed: must be at most 18,446,744,073,709,551,615"),
    ("python cli/toycinema_demo.py --film-seed 3 --shots 0", "argument --shots: must be at least 1, got 0"),
    ("python cli/toycinema_demo.py --shots 4", "--shots sets the length of a --film-seed story"),
    ("python cli/toycinema_demo.py --script no_such_script.yaml", "--script: no such file: no_such_script.yaml"),
    ("python cli/toycinema_train.py --films 0", "argument --films: must be at least 1, got 0"),
    ("python cli/toycinema_train.py --seed -1", "argument --seed: must be at least 0, got -1"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --learning-rate nan",
     "argument --learning-rate: must be from 1e-07 to 1, got nan"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --batch-size 1000",
     "argument --batch-size: must be at most 256, got 1000"),
    ("python benchmarks/toycinema.py --films-seed -7 --films 1", "--films-seed must be dev, test or an integer of at least 0, got -7"),
    ("python benchmarks/toycinema.py --films 100000", "argument --films: must be at most 1,000"),
    ("python benchmarks/toycinema.py --steps 0", "argument --steps: must be at least 1, got 0"),
    ("python benchmarks/identity_report_fewshot.py --films-seed -2", "--films-seed must be dev, test or an integer of at least 0"),
    ("python benchmarks/identity_report_fewshot.py --films x", "argument --films: must be a whole number, got 'x'"),
]


@pytest.mark.parametrize("command,message", BAD_ARGUMENTS, ids=[c for c, _ in BAD_ARGUMENTS])
def test_a_bad_number_is_refused_by_its_flag_before_any_work(command, message, fresh_python):
    proc = fresh_python.run(command, timeout=120, env={"COMFYUI_PATH": "/nonexistent"})  # refused before a host is looked for
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
