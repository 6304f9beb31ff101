"""What a kill -9 leaves when it lands in the middle of a write: a real process writes a file the way the pack writes
every file (``files.atomic_path``: a ``.tmp_xxxxxxxx<suffix>`` beside the target, renamed when whole) and is
SIGKILLed before it is done, so no handler runs and its temporary file stays. Tests use it where catching a real run
inside a write of a few milliseconds would make them flaky; the runs themselves are killed for real beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]

_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from moviedreamer_core.files import atomic_path
with atomic_path(sys.argv[2]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"the first bytes of a file cut short")
        f.flush()
        print(tmp, flush=True)
        time.sleep(120)
"""


@contextmanager
def writing(target: Path) -> Iterator[Path]:
    """A child process writes ``target`` through ``atomic_path`` and stays in the middle of the write while the block
    runs (its temporary file, yielded, is one another process is writing); at the end of the block it is SIGKILLed,
    so the temporary file stays as a kill leaves it."""
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(ROOT), str(target)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        assert tmp.is_file() and tmp.parent == Path(target).parent and tmp.name.startswith(".tmp_"), tmp
        yield tmp
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()


def killed_mid_write(target: Path) -> Path:
    """Write ``target`` in a child process, SIGKILL it mid-write; returns the temporary file the kill left."""
    with writing(target) as tmp:
        pass
    assert tmp.is_file(), tmp
    return tmp
