"""Ctrl-C in the toy benchmark (``python benchmarks/toycinema.py``, README "Toy cinema benchmark"): a run of many
minutes a user stops says what it keeps, not a ``KeyboardInterrupt`` traceback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2]


def test_ctrl_c_stops_the_benchmark_with_one_line_saying_what_is_kept(host, tmp_path, fresh_python):
    command = ["python", "benchmarks/toycinema.py", "--films-seed", "127", "--films", "1", "--skip-ablations",
               "--steps", "2", "--work", str(tmp_path / "work")]
    proc = subprocess.Popen(fresh_python.argv(command), cwd=str(PACK_DIR), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=fresh_python.env({"COMFYUI_PATH": str(host.root)}), text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "decoding true tokens" in line:  # scoring has begun (the host and the shipped models are loaded)
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=300)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("stopped: "), err[-3000:]
    assert "{" not in out  # no summary line: nothing was scored
