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

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..files import atomic_write_bytes
from ..project import MovieProject, project_file
from .participation import MASTER, Participation
from .payload import Payload, sha256
from .split import Share, ShotOutline, split_shots

#: 2: the header names the project and the script's hash (1 named neither).
FORMAT = 2


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
                  seconds: Optional[dict] = None, fps: float = 0.0, project_name: str = "",
                  script_hash: str = "") -> Payload:
    """The payload of ``share`` as recorded in ``project`` (this participant's view of the folder); ``who`` is
    ``None`` on one instance (then ``share`` is everything and no file is sent). ``project_name`` and
    ``script_hash`` say which movie it belongs to (Gather Movie refuses another's)."""
    header = {"format": FORMAT, "job": who.job if who else "", "participant": who.me if who else SINGLE,
              "project": project_name, "script": script_hash,
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


@dataclass(frozen=True)
class Expected:
    """What the master expects of the payloads of its run (``check_payloads``): the project name and script hash
    of its own Gather Movie, the script's keyframe and shot counts and, in a distributed run, every participant's
    share (``None``: one instance, any index of the script)."""

    project_name: str
    script_hash: str
    n_keyframes: int
    n_shots: int
    shares: Optional[dict] = None  # participant -> Share


def expected_of(project_name: str, script_hash: str, outlines: Sequence[ShotOutline],
                who: Optional[Participation]) -> Expected:
    """The ``Expected`` of a run: the shares are computed with the same split every participant uses."""
    shares = None
    if who is not None:
        shares = dict(zip(who.participants, split_shots(outlines, len(who.participants), who.second_cost)))
        shares.setdefault(MASTER, Share((), ()))  # a master that only orchestrates sends an empty payload
    return Expected(project_name, script_hash, sum(o.n_keyframes for o in outlines), len(outlines), shares)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_header(h: dict, name: str) -> None:
    """The fields of a header of this format that ``gather`` reads, by type (the files list was checked when the
    payload was read); a message names the ``results`` input, the participant and the field."""
    def bad(what: str) -> ValueError:
        return ValueError(f"results: participant {name}'s payload: {what}")

    for key in ("job", "participant", "project", "script"):
        if not isinstance(h.get(key), str) or len(h[key]) > 1024:
            raise bad(f"{key} is not a text of at most 1024 characters ({str(h.get(key))[:40]!r})")
    if not _is_number(h.get("fps")) or not 0 <= h["fps"] <= 1000:
        raise bad(f"fps is not a number from 0 to 1000 ({str(h.get('fps'))[:40]!r})")
    seconds = h.get("seconds")
    if not isinstance(seconds, dict) or len(seconds) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and _is_number(v) and v >= 0 for k, v in seconds.items()):
        raise bad("seconds is not an object of at most 16 names and non-negative numbers")
    for kind in ("keyframes", "shots"):
        entries = h.get(kind)
        if not isinstance(entries, dict):
            raise bad(f"{kind} is not an object")
        for key, entry in entries.items():
            if not (isinstance(key, str) and key.isdigit() and key.isascii() and len(key) <= 9):
                raise bad(f"{kind}: {str(key)[:40]!r} is not an index")
            if not isinstance(entry, dict):
                raise bad(f"{kind}[{key}] is not an object")
            texts = ("signature", "sha256") + (("file", "shot", "backend") if kind == "shots" else ())
            for field_name in texts:
                if field_name in ("shot", "backend") and field_name not in entry:
                    continue
                if not isinstance(entry.get(field_name), str) or len(entry[field_name]) > 1024:
                    raise bad(f"{kind}[{key}].{field_name} is not a text ({str(entry.get(field_name))[:40]!r})")
            frames = entry.get("frames", 0)
            if kind == "shots" and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
                raise bad(f"shots[{key}].frames is not a count of frames ({str(frames)[:40]!r})")


def check_payloads(payloads: Sequence[Payload], job: Optional[str], expected: Optional[Expected] = None
                   ) -> tuple[list[Payload], list[str]]:
    """The payloads ``gather`` takes (this run's, of this format) and notes on those it leaves out; raises
    ValueError, naming the ``results`` input, the participant and what is wrong, for a payload that is malformed,
    of another project or script, of a participant this run does not have (or twice), at another fps than the
    master's, or with a file or manifest entry outside its sender's share. Writes nothing: the gathering node calls
    it before it opens the project folder."""
    accepted, notes, seen = [], [], set()
    for p in payloads:
        h = p.header
        who = str(h.get("participant", "?"))[:128]
        if h.get("format") != FORMAT:
            notes.append(f"{who}: a payload of format {str(h.get('format'))[:20]!r}, expected {FORMAT} (same pack version everywhere?)")
            continue
        _check_header(h, who)
        if job is not None and h["job"] != job:
            notes.append(f"{who}: results of another run ({h['job'][:128]}) ignored")
            continue
        if who in seen:
            raise ValueError(f"results: participant {who} sent two payloads")
        seen.add(who)
        if expected is None:
            accepted.append(p)
            continue
        if h["project"] != expected.project_name:
            raise ValueError(f"results: participant {who} made project {h['project'][:200]!r} (its ShotAnimate's "
                             f"project_name), this Gather Movie's project_name makes {expected.project_name[:200]!r}: "
                             "give ShotAnimate and Gather Movie the same project_name")
        if h["script"] != expected.script_hash:
            raise ValueError(f"results: participant {who} made another script (hash {h['script'][:16]}, this Gather "
                             f"Movie's is {expected.script_hash[:16]}): connect the same ScriptEncode to ShotAnimate "
                             "and Gather Movie")
        if expected.shares is None:
            keyframes, shots = range(expected.n_keyframes), range(expected.n_shots)
        elif who in expected.shares:
            keyframes, shots = expected.shares[who].keyframes, expected.shares[who].shots
        else:
            raise ValueError(f"results: participant {who} is not a participant of this run "
                             f"({', '.join(expected.shares)[:300]})")
        mine = {"keyframes": set(keyframes), "shots": set(shots)}
        for entry in h["files"]:
            found = project_file(entry["name"])  # (every name is one: payload.decode_all checked them)
            if found is None or found[1] not in mine[entry["name"].partition("/")[0]]:
                raise ValueError(f"results: participant {who} sent {entry['name']}, which is not in its share "
                                 "(a participant delivers only the keyframes and shots it was given)")
        for kind in ("keyframes", "shots"):
            for key in h[kind]:
                if int(key) not in mine[kind]:
                    raise ValueError(f"results: participant {who} sent the manifest entry of {kind[:-1]} {key}, "
                                     "which is not in its share")
        accepted.append(p)
    if accepted:
        fps = run_fps(accepted)
        for p in accepted:
            if p.header["fps"] != fps:
                raise ValueError(f"results: participant {p.header['participant'][:128]} made its shots at "
                                 f"{p.header['fps']} fps, the master at {fps}: give every ShotAnimate the same fps")
        _check_same_models(accepted)
    return accepted, notes


def run_fps(accepted: Sequence[Payload]) -> float:
    """The run's fps: the master's own (or this instance's), else the first payload's; ``check_payloads`` holds every
    participant to it. 0 when nothing was accepted."""
    master = [p for p in accepted if p.header["participant"] in (MASTER, SINGLE)] or list(accepted)
    return master[0].header["fps"] if master else 0.0


#: What every participant of a distributed run must have made its share with, per kind of entry: the entry's key
#: (a digest IdentityDiffusionRender or ShotAnimate put there; entries of earlier versions have none) and, in words,
#: what differed and what to do about it.
SAME_FOR_ALL = (
    ("keyframes", "models", "rendered their keyframes with different models",
     "give every instance the same model files under the same names (checkpoint, VAE, text encoder, renderer)"),
    ("keyframes", "plan", "planned the movie differently",
     "give every instance the same planner file, text encoder and face embedder (and the same few_shot_references)"),
    ("shots", "models", "animated their shots with different video models",
     "give every instance the same video model files under the same names"),
)


def _check_same_models(payloads: Sequence[Payload]) -> None:
    """Every keyframe of the run made with the same models and from the same plan, every shot with the same video
    models (``SAME_FOR_ALL``). A worker with another file under the same name (a retrained renderer, another
    checkpoint, another planner or video model) made its share differently, and it would otherwise go into the movie
    unnoticed."""
    for kind, key, what, advice in SAME_FOR_ALL:
        made_with: dict = {}  # digest -> participants
        for p in payloads:
            for index, entry in p.header[kind].items():
                digest = entry.get(key) if isinstance(entry, dict) else None
                if digest is None:
                    continue
                if not isinstance(digest, str) or len(digest) > 128:
                    raise ValueError(f"results: participant {p.header['participant'][:128]}'s payload: "
                                     f"{kind[:-1]} {index}'s {key} is not a digest")
                made_with.setdefault(digest, set()).add(p.header["participant"][:128])
        if len(made_with) > 1:
            groups = "; ".join(f"{', '.join(sorted(who))} with {key} {digest[:12]}" for digest, who in made_with.items())
            raise ValueError(f"results: the participants {what} ({groups}): {advice}, and queue again")


def gather(project: MovieProject, payloads: Sequence[Payload], job: Optional[str],
           expected: Optional[Expected] = None) -> Gathered:
    """Write every payload of ``job`` (``None``: accept any, the single-instance case) into ``project``, once all of
    them passed ``check_payloads`` (a refused one stops it before anything is written)."""
    return write_checked(project, *check_payloads(payloads, job, expected))


def write_checked(project: MovieProject, accepted: Sequence[Payload], notes: Sequence[str]) -> Gathered:
    """``gather`` for payloads ``check_payloads`` accepted (with its ``notes`` on the others): their files and
    manifest entries written into ``project``."""
    out = Gathered()
    out.problems = list(notes)
    for p in accepted:
        h = p.header
        who = h["participant"][:128]
        digests = {}
        for entry in h["files"]:
            name = entry["name"]
            if entry.get("sent"):
                atomic_write_bytes(project.path(name), p.files[name])
                out.written.append(name)
                digests[name] = entry["sha256"]
            elif _has(project, name, entry["sha256"]):
                digests[name] = entry["sha256"]
            else:
                out.problems.append(f"{who}: {name} is not in this folder as that participant wrote it (the folder is "
                                    "not shared, or it changed since)")
        count = out.by_participant.setdefault(who, {"keyframes": 0, "shots": 0, "seconds": h["seconds"]})
        for key, entry in h["keyframes"].items():
            k = int(key)
            if digests.get(project.keyframe_file(k)) != entry["sha256"]:
                continue
            # the file's SHA-256 stays in the entry (checked above against the file): without it a keyframe replaced
            # on disk after a distributed run was reused, and its shots animated from the wrong picture (an audit)
            project.record_keyframe(k, entry["signature"], project.keyframe_info(entry))
            out.keyframes.add(k)
            count["keyframes"] += 1
        for key, entry in h["shots"].items():
            s, rel = int(key), entry["file"]
            if not rel.startswith(f"shots/shot_{s:05d}_") or digests.get(rel) != entry["sha256"]:
                continue
            project.record_shot(s, rel, entry["signature"], project.shot_info(entry), sha256=entry["sha256"])
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
