"""IdentityDiffusionRender's identity report: each keyframe checked with the script's own face embedder, once.

The report itself is ``moviedreamer_core/identity_report.py``; this module is what the render loop needs around it:
the embedder (the one ScriptEncode made the identity banks with, carried in ``ScriptEmbeds.face_embedder``), the
manifest (a report is stored in the keyframe's entry, and a resumed keyframe whose stored report still fits, by its
key, is not checked again: nothing is re-made on resume), the time it takes (in the node's summary), and failure:
a report that cannot be made (an embedder's error) must not stop the movie, so it is logged, the reports are switched
off for the rest of the run, and the summary says why. The keyframe itself is always saved first.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from ..moviedreamer_core.identity_report import KeyframeChecker, panel_view

log = logging.getLogger(__name__)
#: Flag lines the node's summary quotes (the manifest and the panel hold them all).
SUMMARY_FLAGS = 3


class KeyframeIdentity:
    """``check(project, k, pixels)`` after keyframe ``k`` is saved or resumed; ``note()`` for the node's summary."""

    def __init__(self, script_embeds):
        embedder = getattr(script_embeds, "face_embedder", None)
        self.checker: Optional[KeyframeChecker] = KeyframeChecker(script_embeds, embedder) if embedder is not None else None
        self.made = self.kept = 0
        self.seconds = 0.0
        self.flagged: list[tuple[int, str]] = []
        self.failed: Optional[str] = None

    def check(self, project, k: int, pixels) -> Optional[dict]:
        """Keyframe ``k``'s report (``uint8 [H, W, 3]`` pixels): the stored one when it still fits, else a new one,
        recorded in the project's manifest. ``None`` when there is no embedder or reports failed this run."""
        if self.checker is None or self.failed is not None:
            return None
        report = self.checker.stored(k, project.keyframe_entry(k))
        if report is not None:
            self.kept += 1
        else:
            started = time.perf_counter()
            try:
                report = self.checker.report(k, pixels)
            except Exception as e:  # noqa: BLE001 - a diagnostic must not stop the movie; logged and named below
                log.warning("MovieDreamer identity report of keyframe %d failed; no more reports this run", k, exc_info=True)
                self.failed = f"{type(e).__name__}: {e}"
                return None
            self.seconds += time.perf_counter() - started
            self.made += 1
            project.record_keyframe_identity(k, report)
        if not report["ok"]:
            self.flagged += [(k, line) for line in report["flags"]]
        return report

    @staticmethod
    def panel(report: Optional[dict]) -> Optional[dict]:
        """What the storyboard panel shows of ``report`` (``None`` stays ``None``)."""
        return panel_view(report) if report is not None else None

    def note(self) -> str:
        """The summary line: keyframes checked this run and their time, reports kept, the first flags."""
        if self.checker is None:
            return "\nidentity report: off (these script embeddings carry no face embedder; re-run ScriptEncode)"
        text = (f"\nidentity report ({self.checker.embedder.space.encoder}, threshold {self.checker.threshold:g}): "
                f"{self.made} keyframes checked in {self.seconds:.2f} s, {self.kept} kept from earlier runs")
        keyframes = sorted({k for k, _ in self.flagged})
        if keyframes:
            shown = "; ".join(f"#{k} {line}" for k, line in self.flagged[:SUMMARY_FLAGS])
            more = len(self.flagged) - SUMMARY_FLAGS
            text += f"; {len(keyframes)} flagged: {shown}" + (f" (+{more} more in the manifest)" if more > 0 else "")
        else:
            text += "; none flagged"
        if self.failed:
            text += f"\nidentity report stopped: {self.failed}"
        return text
