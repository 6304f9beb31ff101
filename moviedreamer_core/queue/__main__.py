"""``python -m moviedreamer_core.queue``."""

import sys

from .cli import main

sys.exit(main())
