"""Ctrl-C in the training commands (``train_renderer.py``, ``toycinema_train.py``): stop after a whole step, state kept.

A Ctrl-C raises ``KeyboardInterrupt`` wherever the interpreter is, in the middle of a step; the training's state
would then be the last periodic save, minutes old. These commands take the first Ctrl-C as "stop after this step":
the progress hook raises ``StoppedByUser`` after the step under way, the trainer saves its state whole
(``moviedreamer_core/training_state.py``) and the same command continues from it.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional


class StoppedByUser(Exception):
    """Ctrl-C during training: the run stopped after a whole step (``step``), its state saved."""

    def __init__(self, step: int):
        super().__init__(f"stopped after step {step}")
        self.step = step


class CtrlC:
    """Ctrl-C while a model trains stops it after the step under way, so the training state is saved whole
    (``moviedreamer_core/training_state.py``) and the same command continues from it; a second Ctrl-C, or one before
    training has begun (nothing to keep yet), stops at once as usual. ``with CtrlC() as ctrl_c:`` and ``ctrl_c.after_step(step)``
    from the training's ``on_step``."""

    def __init__(self):
        self.asked = False
        self.training = False

    def __enter__(self) -> "CtrlC":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.asked or not self.training:
            raise KeyboardInterrupt
        self.asked = True
        print("Ctrl-C: stopping after this step, keeping the training state (Ctrl-C again: stop at once)",
              file=sys.stderr, flush=True)

    def after_step(self, step: int, total: Optional[int] = None) -> None:
        """Called after each whole step; raises ``StoppedByUser`` when a Ctrl-C asked to stop, except after the last
        step when ``total`` is given: then the training is done, and finishing it (its file saved) beats keeping its
        state. (A command with stages after this one gives no ``total``: the user asked to stop, not to go on.)"""
        self.training = True
        if self.asked:
            if total is not None and step >= total:
                print("Ctrl-C: that was the last step; finishing", file=sys.stderr, flush=True)
                return
            raise StoppedByUser(step)
