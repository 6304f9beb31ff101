"""A participant's share as a payload, and the master's gathering of every payload into the project folder.

Share side (``share_payload``): the manifest entries of the share's keyframes and shots, with their files (keyframe
image and latent, shot video and preview sidecar): listed by name, size and SHA-256, and sent along when the
participant does not write into the master's folder (``shared_folder``).

Master side (``gather``): every payload of this job is checked (``payload.decode_all``), sent files are written
into the project folder atomically, files listed as shared must be there with the same hash, and the entries go
into the master's manifest. Whatever the script needs that no payload delivered is named with the participant
that was to make it, so the user knows what a rerun will make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..files import atomic_write_bytes
from ..project import MovieProject
from .participation import Participation
from .payload import Payload, sha256
from .split import Share, ShotOutline, split_shots

FORMAT = 1


def _file_entry(project: MovieProject, rel: str, send: bool, files: dict) -> Optional[dict]:
    try:
        with open(project.path(rel), "rb") as f:
            data = f.read()
    except OSError:
        return None
    if send:
        files[rel] = data
    return {"name": rel, "size": len(data), "sha256": sha256(data), "sent": bool(send)}


#: The participant name in the payload of a run on one instance (no ComfyUI-Distributed).
SINGLE = "this instance"


def share_payload(project: MovieProject, who: Optional[Participation], share: Share, *, send_files: bool,
                  seconds: Optional[dict] = None, fps: float = 0.0) -> Payload:
    """The payload of ``share`` as recorded in ``project`` (this participant's view of the folder); ``who`` is
    ``None`` on one instance (then ``share`` is everything and no file is sent)."""
    header = {"format": FORMAT, "job": who.job if who else "", "participant": who.me if who else SINGLE,
              "keyframes": {}, "shots": {}, "files": [],
              "seconds": seconds or {}, "fps": fps}
    files: dict = {}

    def add(kind: str, index: int, rel: Optional[str], companion: str, drop: tuple = ()) -> None:
        """List a finished item's file and its companion (a keyframe's latent, a shot's preview sidecar), and its
        manifest entry with the file's hash; an item not done, or whose file is gone, is left out. ``rel``: the
        item's file (``None``: the one its entry names)."""
        entry = project.manifest[kind].get(str(index))
        if not entry or entry.get("status") != "done":
            return
        listed = _file_entry(project, rel or entry["file"], send_files, files)
        if listed is None:
            return
        extra = _file_entry(project, companion, send_files, files)
        header["files"] += [listed] + ([extra] if extra is not None else [])
        header[kind][str(index)] = {**{n: v for n, v in entry.items() if n not in drop}, "sha256": listed["sha256"]}

    for k in share.keyframes:
        add("keyframes", k, project.keyframe_file(k), project.latent_file(k))
    for s in share.shots:
        add("shots", s, None, project.sidecar_file(s), drop=("bytes", "mtime_ns"))
    return Payload(header, files)


@dataclass
class Gathered:
    """What the payloads delivered: keyframe and shot indices, files written, and who sent what."""

    keyframes: set = field(default_factory=set)
    shots: set = field(default_factory=set)
    written: list = field(default_factory=list)
    by_participant: dict = field(default_factory=dict)  # participant -> {"keyframes": n, "shots": n, "seconds": {}}
    problems: list = field(default_factory=list)


def _has(project: MovieProject, rel: str, digest: str) -> bool:
    try:
        with open(project.path(rel), "rb") as f:
            return sha256(f.read()) == digest
    except OSError:
        return False


def gather(project: MovieProject, payloads: Sequence[Payload], job: Optional[str]) -> Gathered:
    """Write every payload of ``job`` (``None``: accept any, the single-instance case) into ``project``."""
    out = Gathered()
    for p in payloads:
        h = p.header
        who = str(h.get("participant", "?"))[:128]
        if h.get("format") != FORMAT:
            out.problems.append(f"{who}: a payload of format {h.get('format')!r}, expected {FORMAT} (same pack version everywhere?)")
            continue
        if job is not None and h.get("job") != job:
            out.problems.append(f"{who}: results of another run ({h.get('job')}) ignored")
            continue
        digests = {}
        for entry in h.get("files", []):
            name = entry["name"]
            if entry.get("sent"):
                atomic_write_bytes(project.path(name), p.files[name])
                out.written.append(name)
                digests[name] = entry["sha256"]
            elif _has(project, name, entry.get("sha256", "")):
                digests[name] = entry["sha256"]
            else:
                out.problems.append(f"{who}: {name} is not in this folder as that participant wrote it (the folder is "
                                    "not shared, or it changed since)")
        count = out.by_participant.setdefault(who, {"keyframes": 0, "shots": 0, "seconds": h.get("seconds", {})})
        for key, entry in (h.get("keyframes") or {}).items():
            if not str(key).isdigit() or not isinstance(entry, dict):
                continue
            k = int(key)
            if digests.get(project.keyframe_file(k)) != entry.get("sha256"):
                continue
            info = {n: v for n, v in entry.items() if n not in ("status", "file", "signature", "sha256")}
            project.record_keyframe(k, str(entry.get("signature", "")), info)
            out.keyframes.add(k)
            count["keyframes"] += 1
        for key, entry in (h.get("shots") or {}).items():
            if not str(key).isdigit() or not isinstance(entry, dict):
                continue
            s, rel = int(key), entry.get("file")
            if not isinstance(rel, str) or not rel.startswith(f"shots/shot_{s:05d}_") or digests.get(rel) != entry.get("sha256"):
                continue
            info = {n: v for n, v in entry.items() if n in ("shot", "frames", "backend")}
            project.record_shot(s, rel, str(entry.get("signature", "")), info)
            out.shots.add(s)
            count["shots"] += 1
    return out


def missing_work(outlines: Sequence[ShotOutline], who: Optional[Participation], gathered: Gathered) -> list[str]:
    """Lines naming each participant's shots (and keyframes) that no payload delivered."""
    if who is None:
        shares = {"this instance": split_shots(outlines, 1)[0]}
    else:
        shares = dict(zip(who.participants, split_shots(outlines, len(who.participants), who.second_cost)))
    lines = []
    for name, share in shares.items():
        shots = [s for s in share.shots if s not in gathered.shots]
        keyframes = [k for k in share.keyframes if k not in gathered.keyframes]
        if shots or keyframes:
            lines.append(f"{name}: {len(shots)} of its {len(share.shots)} shots and {len(keyframes)} of its "
                         f"{len(share.keyframes)} keyframes did not arrive (shot indices {_ranges(shots)})")
    return lines


def _ranges(values: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"`` (shown counting from 1, as the script's shot list)."""
    out, values = [], sorted(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(f"{values[i] + 1}" if i == j else f"{values[i] + 1}-{values[j] + 1}")
        i = j + 1
    return ", ".join(out[:20]) + (" ..." if len(out) > 20 else "") or "none"
