"""Who this instance is in a distributed run: the ``distributed`` input of our nodes, as JSON.

ComfyUI-Distributed fills hidden inputs only on its own nodes (its collector learns the job id, whether it runs
on a worker, its worker id and the enabled workers). Our on-prompt step (``prompt.py``) copies that into one
JSON string on IdentityDiffusionRender, ShotAnimate and MovieDreamerGather, parsed here. The string also enters
the host's cache key, so a rerun with other participants re-executes the nodes.

Everything in it is checked and bounded: it arrives in a prompt, which anybody who can reach the server sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from ..text_files import loads_json

FORMAT = 1
MASTER = "master"
#: At most this many participants (master and workers) in one run.
MAX_PARTICIPANTS = 64
#: Longest participant id and job id accepted.
MAX_ID_LENGTH = 128
MAX_JSON_LENGTH = 16384
_ID = re.compile(r"^[A-Za-z0-9_.:@-]+$")


@dataclass(frozen=True)
class Participation:
    """This instance's place in a distributed run.

    ``participants`` lists who makes a share, in ComfyUI-Distributed's own order (the master first when it renders,
    then the enabled workers); ``me`` is ``"master"`` or this worker's id; ``job`` ComfyUI-Distributed's job id.
    ``index`` is ``None`` for a master that only orchestrates (``master_renders`` off)."""

    job: str
    me: str
    participants: tuple[str, ...]
    master_renders: bool = True
    second_cost: float = 1.0  # a second of video in keyframes, for the split (``split.py``)

    @property
    def is_master(self) -> bool:
        return self.me == MASTER

    @property
    def index(self) -> Optional[int]:
        return self.participants.index(self.me) if self.me in self.participants else None

    @property
    def writer(self) -> str:
        """A name for this participant's files in a shared project folder (``journals/<writer>.jsonl``)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.me)[:MAX_ID_LENGTH]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "job": self.job, "me": self.me, "participants": list(self.participants),
                           "master_renders": self.master_renders, "second_cost": self.second_cost},
                          sort_keys=True, separators=(",", ":"))


def _check_id(value, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not _ID.match(value):
        raise ValueError(f"distributed: {field} must be an id of letters, digits and _.:@- (at most "
                         f"{MAX_ID_LENGTH} characters), got {str(value)[:40]!r}")
    return value


def parse_participation(text: Optional[str]) -> Optional[Participation]:
    """The ``distributed`` input: ``None`` or empty (not a distributed run) or the JSON ``Participation.to_json``
    wrote. Anything else is refused with a message naming the field."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str) or len(text) > MAX_JSON_LENGTH:
        raise ValueError(f"distributed: expected a JSON string of at most {MAX_JSON_LENGTH} characters (it is "
                         "filled in by ComfyUI-Distributed's queue; leave the input unconnected)")
    try:
        data = loads_json(text)
    except ValueError as e:
        raise ValueError(f"distributed: not JSON ({e}); leave the input unconnected") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"distributed: expected an object of format {FORMAT}")
    if "refused" in data:  # the on-prompt step found the run must not start (prompt.py: Refused)
        raise ValueError(f"distributed: {str(data['refused'])[:1000]}")
    people = data.get("participants")
    if not isinstance(people, list) or not 1 <= len(people) <= MAX_PARTICIPANTS:
        raise ValueError(f"distributed: participants must list 1 to {MAX_PARTICIPANTS} ids")
    people = tuple(_check_id(p, "participants") for p in people)
    master_renders = data.get("master_renders", True)
    if not isinstance(master_renders, bool):
        raise ValueError("distributed: master_renders must be true or false")
    workers = people[1:] if master_renders and people[0] == MASTER else people
    if MASTER in workers:
        raise ValueError(f"distributed: a worker's id is {MASTER!r}, the master's own name: give that worker another "
                         "id in ComfyUI-Distributed's panel (its gpu_config.json)")
    if len(set(people)) != len(people):
        raise ValueError("distributed: participants lists an id twice")
    me = _check_id(data.get("me"), "me")
    second_cost = data.get("second_cost", 1.0)
    if isinstance(second_cost, bool) or not isinstance(second_cost, (int, float)) or not 0 <= second_cost <= 1000:
        raise ValueError("distributed: second_cost must be a number from 0 to 1000")
    if me != MASTER and me not in people:
        raise ValueError(f"distributed: this worker ({me}) is not among the participants")
    return Participation(_check_id(data.get("job"), "job"), me, people, master_renders, float(second_cost))
