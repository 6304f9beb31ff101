"""A command whose output goes to a reader that stops early (``python -m moviedreamer_core.script schema | head``).

When the reader closes the pipe, the next write raises ``BrokenPipeError`` and Python prints a traceback, and then
a second one while it flushes stdout at exit. The reader leaving is not an error of the command: it ends quietly
with status 1, as the Python documentation advises (``signal`` module, "Note on SIGPIPE")."""

from __future__ import annotations

import os
import sys
from typing import Callable


def exit_status(main: Callable[[], int]) -> int:
    """``main()``'s status; 1, without a traceback, when stdout's reader closed the pipe meanwhile."""
    try:
        status = main()
        sys.stdout.flush()  # a reader that left is found here too, not at exit
        return status
    except BrokenPipeError:
        # stdout's buffer still holds bytes; point the descriptor at devnull so the flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
