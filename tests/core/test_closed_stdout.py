"""A reader that stops early (``python -m moviedreamer_core.script schema | head``) ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["schema"], ["validate", "my_script.yaml"]])
def test_a_closed_pipe_is_no_traceback(command, tmp_path):
    (tmp_path / "my_script.yaml").write_text("title: T\nshots:\n  - {id: 1, scene: a room, action: Nothing., duration: 2}\n")
    command = ["-m", "moviedreamer_core.script", *[str(tmp_path / w) if w.endswith(".yaml") else w for w in command]]
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader left before the command wrote a byte
    _, err = proc.communicate(timeout=120)
    assert err.decode() == "", err.decode()[-2000:]
    assert proc.returncode == 1
