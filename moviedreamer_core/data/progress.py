"""A progress bar over videos: tqdm when installed, else one plain line per video on stderr."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, desc: str = "videos", enabled: bool = True):
        self.total, self.done, self.desc, self.enabled = total, 0, desc, enabled
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="video", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, message: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(message[:60], refresh=False)
            self._bar.update(1)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
