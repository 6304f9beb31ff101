"""One movie over several ComfyUI instances, on ComfyUI-Distributed (its master, workers and collector).

Keyframes (given their tokens) and shots (given their keyframes) are independent work, so every participant
takes a share of them. This package holds the pure parts, with no import of the host or of ComfyUI-Distributed:

* ``participation``: who this instance is in a distributed run (the ``distributed`` input our nodes receive).
* ``split``: which shots and keyframes each participant makes (chains of shots that must stay together).
* ``prompt``: the on-prompt step that writes ``distributed`` into our nodes from ComfyUI-Distributed's collector.
* ``payload``: a participant's results as framed bytes in an AUDIO waveform (the collector's lossless channel).

README, "Distributed rendering", says how the pieces fit in a workflow.
"""

from .participation import Participation, parse_participation
from .split import Share, ShotOutline, shot_chains, split_shots

__all__ = ["Participation", "parse_participation", "Share", "ShotOutline", "shot_chains", "split_shots"]
