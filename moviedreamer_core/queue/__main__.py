"""``python -m moviedreamer_core.queue``."""

import sys

from ..closed_stdout import exit_status
from .cli import main

sys.exit(exit_status(lambda: main(exiting=True)))
