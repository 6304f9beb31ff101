"""The movie project folder: where every stage writes its results as soon as they exist.

``<output>/moviedreamer/<project>/`` holds ``manifest.json`` (script hash, per-keyframe
and per-shot status, seeds, parameters, file names), ``keyframes/`` (one image per keyframe, written the
moment it is rendered), ``shots/`` (one video per shot) and the assembled movie. A rerun with the same inputs
finds finished work here and skips it; nothing already rendered is lost when a later step fails.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a crash or
a cancel leaves either the old file or the new one, never half of one. A keyframe counts as done only when
its manifest entry carries the same *signature* (a hash of everything that determines its pixels) and its
image file still reads.

The folder follows the current script. When a stage starts it moves aside what the script no longer has
(``retire_keyframes``, ``retire_shots``): keyframes past the storyboard's end, shots past the script's end or
filed under another shot's id (a re-ordered script), and an assembled movie made of other shots go into
``stale/<time>/`` under their own relative names and leave the manifest. Nothing is deleted, and a finished
rerun leaves a folder whose manifest, files and movie agree. Files of keyframes and shots the script still
has stay where they are: their signatures decide whether they are reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
from PIL import Image

from .files import (atomic_write_bytes, file_sha256, open_regular, read_regular, remove_stale_temp_files,
                    removed_temp_files_text, replace_patiently, write_errors_named)

try:
    import fcntl
except ImportError:  # Windows: no flock; distributed participants sharing a folder need a POSIX filesystem
    fcntl = None
from .paths import UnsafePathError, is_windows_device_name, legacy_folder_name, resolve_inside, safe_folder_name
from .project_lock import ProjectLock
from .text_files import loads_json, loads_json_object

log = logging.getLogger(__name__)

PROJECT_FORMAT_VERSION = 1
PROJECTS_DIR = "moviedreamer"
#: Where files the current script no longer has are moved (``stale/<YYYYmmdd-HHMMSS>/keyframes/...``).
STALE_DIR = "stale"
#: The manifest's journal: one JSON line per update since ``manifest.json`` was last written whole.
JOURNAL_FILE = "manifest.journal"
#: Journals of the participants of a distributed run that share this folder: ``journals/<writer>.jsonl``.
WRITER_JOURNALS_DIR = "journals"
#: Folders of the project whose temporary files a new run may remove (``files.remove_stale_temp_files``).
TEMP_FOLDERS = ("", "keyframes", "shots")
#: Every folder a project writes into below its own: each must stay inside the project folder (``_check_subfolders``).
SUBFOLDERS = ("keyframes", "shots", STALE_DIR, WRITER_JOURNALS_DIR)
#: A shot entry's info besides what ``record_shot`` writes itself: its shot id, frames, backend and the digest of its
#: video models (``animate.movie``; Gather Movie compares it between participants).
SHOT_INFO_KEYS = ("shot", "frames", "backend", "models")
#: What ``record_keyframe`` writes in a keyframe's entry itself; the rest is the keyframe's info (``keyframe_info``).
KEYFRAME_RECORD_KEYS = ("status", "file", "signature")
#: Preview frames in a shot's sidecar are JPEG files of this quality (``save_shot_sidecar``).
PREVIEW_JPEG_QUALITY = 75
#: The largest ``manifest.json`` read (``read_manifest_file``). A keyframe's entry holds its prompt, seeds, digests and
#: identity report, a few kB; a movie at the script's limits (20,000 keyframes, 5,000 shots) with prompts of a few
#: hundred words makes a manifest of about 100 MB. A larger file is no manifest this pack wrote: it is not read whole.
MAX_MANIFEST_BYTES = 2**30


def read_manifest_file(path: str, inside: Optional[str] = None) -> dict:
    """The JSON object in the manifest ``path``, read bounded: an ``OSError`` when it is missing, not a regular file, a
    link leading out of ``inside`` (``files.open_regular``) or larger than ``MAX_MANIFEST_BYTES``; a ``ValueError``
    that begins with ``path`` when it is not JSON, is nested too deeply or is not an object (``text_files``)."""
    return loads_json_object(read_regular(path, inside=inside, limit=MAX_MANIFEST_BYTES), path)


def _name_digest(name: str) -> str:
    # "surrogatepass": a lone surrogate (JSON lets a /prompt body carry "\udcff") is hashed like any other character
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _recorded_name(output_dir: str, folder: str, or_title: bool = False) -> Optional[str]:
    """The project name ``<output_dir>/moviedreamer/<folder>/manifest.json`` records (``or_title``: else the script
    title an earlier version recorded, which was the name when no project name was given), or ``None`` (no such
    folder or manifest, or one that names nobody)."""
    try:
        project = os.path.join(output_dir, PROJECTS_DIR, folder)
        data = read_manifest_file(os.path.join(project, "manifest.json"), inside=project)
    except (OSError, ValueError):
        return None
    recorded = data.get("name", data.get("title") if or_title else None)
    return recorded if isinstance(recorded, str) else None


def project_folder_name(name: str) -> str:
    """The folder of the project called ``name`` (a project name or a script's title).

    An ASCII name keeps the folder name it always had (``safe_folder_name``: ``My Movie: Part 1`` is
    ``My Movie_ Part 1``), so existing projects resume. A name with other characters (``東京物語``, ``Amélie``), or
    one with nothing left after cleaning (``???``), would lose what tells it apart, so it gets the cleaned part (or
    ``movie``) and the first 8 hex digits of the SHA-256 of the name: ``movie-3f0c8a1e``, ``Am_lie-5b1d0e77``.
    """
    name = name or ""
    cleaned = safe_folder_name(name, fallback="")
    if cleaned and name.isascii():
        return cleaned
    return f"{(cleaned or 'movie')[:71]}-{_name_digest(name)}"


def keyframe_file(index: int) -> str:
    """Keyframe ``index``'s file, relative to its project folder."""
    return f"keyframes/keyframe_{index:05d}.png"


#: The most characters of a shot's id in its file name (``shot_file``; ``safe_folder_name``'s ``max_length``).
SHOT_ID_LENGTH = 40


def shot_file(index: int, shot_id: str) -> str:
    """Shot ``index``'s video, relative to its project folder, named after its id as ``safe_folder_name`` cleans it
    (``shots/shot_00000_opening shot.mp4``; ``Amélie (1)`` is ``Am_lie _1``, an id with nothing left ``shot``)."""
    return f"shots/shot_{index:05d}_{safe_folder_name(shot_id, fallback='shot', max_length=SHOT_ID_LENGTH)}.mp4"


# ------------------------------------------------------------------------------ the project's own file names
# One definition of what a project's keyframe, shot and movie files are called, read by every check of a name made
# elsewhere: a manifest entry's file (``_drop_unusable_entries``), the files ``retire_keyframes`` and ``retire_shots``
# move aside, and the files a participant's payload may carry (``distribution.payload``). They were four patterns
# that drifted apart: the payload's allowed no space, so a worker's shot with the id ``opening shot`` was refused by
# the master and the distributed run failed; the manifest's took any Unicode digit and 80 characters of id.

#: A keyframe's or shot's index as its file names write it (``f"{index:05d}"``): ASCII digits, five to eight (a script
#: has at most 5000 shots of 32 keyframes: six digits); never a longer zero-padded form.
_INDEX = r"(0[0-9]{4}|[1-9][0-9]{4,7})"
#: The shot id's part of a shot file name: what ``safe_folder_name`` makes of any id in every release (ASCII letters,
#: digits, ``.``, ``_``, ``-`` and the space, every other character made ``_``; earlier releases cut it after cleaning,
#: so it could end in a space or a dot). No separator, so it never leaves ``shots/``; bounded.
_SHOT_ID_PART = rf"[A-Za-z0-9._ -]{{1,{SHOT_ID_LENGTH}}}"
#: Every file a project writes for a keyframe or a shot (``keyframe_file``, ``latent_file``, ``shot_file``,
#: ``sidecar_file``), relative to its folder, by kind: patterns for ``fullmatch`` (``$`` would pass a final newline),
#: whose group 1 is the index.
PROJECT_FILES = {
    "keyframe": re.compile(rf"keyframes/keyframe_{_INDEX}\.png"),
    "latent": re.compile(rf"keyframes/keyframe_{_INDEX}\.latent\.safetensors"),
    "shot": re.compile(rf"shots/shot_{_INDEX}_{_SHOT_ID_PART}\.mp4"),
    "sidecar": re.compile(rf"shots/shot_{_INDEX}\.preview\.safetensors"),
}
#: The assembled movie, directly in the project folder: ``<project folder>.mp4`` (``project_folder_name``, or the
#: folder an earlier version gave the project: the same characters, at most 80); never a Windows device name.
_MOVIE_FILE = re.compile(r"[A-Za-z0-9._ -]{1,200}\.mp4")


def project_file(rel: str) -> Optional[tuple[str, int]]:
    """``(kind, index)`` when ``rel`` (relative to the project folder, ``/`` between folders) is the name the project
    gives a keyframe's or a shot's file (``PROJECT_FILES``), else ``None``."""
    if isinstance(rel, str):
        for kind, pattern in PROJECT_FILES.items():
            found = pattern.fullmatch(rel)
            if found:
                return kind, int(found.group(1))
    return None


def is_movie_file(rel: str) -> bool:
    """Whether ``rel`` is a name the project gives its assembled movie (``_MOVIE_FILE``)."""
    return isinstance(rel, str) and bool(_MOVIE_FILE.fullmatch(rel)) and not is_windows_device_name(rel)


class KeyframeChanged(Exception):
    """A keyframe file whose bytes are not the ones recorded (``read_keyframe``)."""


#: What reading a keyframe file raises when it is missing, not an image, or a decompression bomb put in its place.
UNREADABLE_IMAGE = (OSError, ValueError, Image.DecompressionBombError)


def read_keyframe(path: str, sha256: Optional[str] = None) -> np.ndarray:
    """The keyframe picture in ``path`` as ``uint8 [H, W, 3]``, read once and, with ``sha256``, checked against it
    (``KeyframeChanged``) before it is decoded; ``UNREADABLE_IMAGE`` when it cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise KeyframeChanged(path)
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).copy()


@dataclass(frozen=True)
class KeyframeSet:
    """``MD_KEYFRAMES``: the keyframes of a movie as files in its project folder, read one at a time.

    IdentityDiffusionRender hands this to ShotAnimate instead of one IMAGE batch holding every keyframe, so a long
    movie's keyframes never sit in memory together: a shot reads its own keyframes when it is made or checked."""

    root: str
    count: int
    width: int
    height: int
    #: Each keyframe file's SHA-256 when the set was made ("" or missing: not checked). The project's lock is held
    #: per node, not per prompt: another server (or command) running the same project with another script may make
    #: keyframes again between IdentityDiffusionRender and the node that reads this set, whose movie then showed the
    #: other script's keyframes (an audit). A keyframe whose bytes changed since is refused, not used.
    sha256: tuple = ()

    def path(self, index: int) -> str:
        return os.path.join(self.root, keyframe_file(index))

    def load(self, index: int) -> np.ndarray:
        """Keyframe ``index`` as ``uint8 [H, W, 3]``."""
        if not 0 <= index < self.count:
            raise IndexError(f"keyframe {index} of {self.count}")
        try:
            return read_keyframe(self.path(index), self.sha256[index] if index < len(self.sha256) else "")
        except KeyframeChanged:
            raise RuntimeError(f"keyframe {index} of the movie project {self.root} changed on disk after it was "
                               "rendered in this run (another ComfyUI server or command is making this project, "
                               "perhaps with another script): queue again, and give each script its own "
                               "project_name") from None
        except UNREADABLE_IMAGE as e:
            raise ValueError(f"keyframe {index} of the movie project {self.root} can not be read ({e}): queue the "
                             "render again") from e

    @staticmethod
    def recorded_sha256(project: "MovieProject", count: int) -> tuple:
        """The SHA-256 each of the first ``count`` keyframes' manifest entries records ("" where none does)."""
        return tuple(str((project.keyframe_entry(k) or {}).get("sha256") or "") for k in range(count))


class MovieProject:
    """One movie's folder under the host's output directory.

    The manifest is kept in memory and on disk as ``manifest.json`` (the whole manifest, written atomically) plus
    ``manifest.journal`` (one JSON line per update since then). An update (a keyframe or shot finished, one retired)
    appends one line, so its cost does not grow with the movie; ``compact`` writes ``manifest.json`` whole and removes
    the journal, once when the project is opened (if a journal is left) and once at the end of a node's run. A kill at
    any moment leaves a readable project: ``manifest.json`` is the old or the new one, a line cut short is skipped, and
    replaying the journal over a manifest that already holds its lines changes nothing (every line sets or removes one
    entry). Only the last update can be lost, and then its keyframe or shot is made again.

    Several writers (the participants of a distributed run sharing this folder, ``distribution/``) each open the
    project with a ``writer`` name: their updates go to their own journal, ``journals/<writer>.jsonl`` (appended
    under an exclusive ``flock``), and they never write ``manifest.json`` nor move files aside. Every opening reads
    ``manifest.json``, the main journal and every writer's journal; the one project without a writer name (the
    master's gathering step, or an ordinary run) folds the writers' journals into ``manifest.json`` when it
    compacts, taking each journal's lock while it reads and empties it.

    A run (``exclusive=True``: every node that writes a project) holds the project's lock from its opening to the end
    of ``compacting`` (``project_lock``): a second process's run of the same project waits for it, then reads what the
    first finished and reuses it, instead of doing all the work again.
    """

    def __init__(self, output_dir: str, name: str, writer: Optional[str] = None, *, exclusive: bool = False,
                 wait: Optional[Callable[[str], None]] = None):
        self.name = self.folder_for(output_dir, name)
        self.root = self.root_of(output_dir, self.name)
        self._check_links()
        with write_errors_named(os.path.join(self.root, "keyframes")):  # a new project on read-only storage: said so
            os.makedirs(os.path.join(self.root, "keyframes"), exist_ok=True)
        self.manifest_path = os.path.join(self.root, "manifest.json")
        if writer is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", writer):
            raise ValueError(f"writer name {writer!r}: letters, digits and _.- only")
        self.writer = writer
        #: A run (``exclusive``: the nodes' openings without a writer name) holds the project's lock (``project_lock``)
        #: until ``close`` or the end of ``compacting``: one process at a time makes a project, and another process's
        #: run waits here, calling ``wait(message)`` between tries. Openings that only read do not take it.
        self._lock = ProjectLock(self.root, wait) if exclusive and writer is None else None
        if self._lock is not None:
            weakref.finalize(self, self._lock.release)  # a project dropped without ``close`` lets go when collected
        try:
            self._open(name)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str) -> None:
        self.journal_path = os.path.join(self.root, JOURNAL_FILE)
        self.writer_journal_path = (os.path.join(self.root, WRITER_JOURNALS_DIR, f"{self.writer}.jsonl")
                                    if self.writer else None)
        #: Temporary files of an interrupted run that this opening removed (``files.remove_stale_temp_files``).
        self.removed_temp_files = [os.path.relpath(p, self.root).replace(os.sep, "/") for p in
                                   remove_stale_temp_files(*(os.path.join(self.root, folder) for folder in TEMP_FOLDERS))]
        self.manifest = self._read_manifest()
        journals = os.path.exists(self.journal_path)
        if journals:
            self._replay_journal(self.journal_path)
        for path in self._writer_journals():
            self._replay_journal(path)
            journals = True
        self.dropped_entries = _drop_unusable_entries(self.manifest)
        if self.dropped_entries:
            log.warning("MovieDreamer: %s: manifest entries left out (not what this pack writes): %s", self.root,
                        "; ".join(self.dropped_entries[:10]))
        if journals and self.writer is None:
            self.compact()
        if self.manifest.get("name") != name:
            self._set(("name",), name)

    @property
    def waited(self) -> float:
        """Seconds this opening waited for another process to let go of the project (0 when it did not)."""
        return self._lock.waited if self._lock is not None else 0.0

    def close(self) -> None:
        """Let go of the project (``project_lock``) for another process; the object still reads and writes, unguarded.
        ``compacting`` ends with it; ``with MovieProject(...) as project:`` too."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "MovieProject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_links(self) -> None:
        """Refuse a project whose ``keyframes/``, ``shots/``, ``stale/`` or ``journals/`` is a link that leads out of
        the project folder: every file is written through them (a temporary file, then renamed), so such a link would
        put keyframes, shots and moved-aside movies wherever it points. (``root_of`` refuses a linked project folder.)

        Refuse as well a project holding, in its folder or those four, a link that leads out of it, or something that
        is neither a file nor a folder (a named pipe, a device): a file is replaced by a rename when written, but read
        through the link first (a shot's SHA-256, the manifest), and a journal is appended to and emptied in place (a
        link planted as ``journals/x.jsonl`` had a file outside the output folder emptied by an ordinary run; a pipe as
        ``manifest.json`` blocked the server's queue for ever). ``open_regular`` guards the journals' own opens."""
        for folder in SUBFOLDERS:
            try:
                resolve_inside(self.root, folder)
            except UnsafePathError:
                raise UnsafePathError(f'the project folder {self.root}: its "{folder}" folder is a link that leads '
                                      "outside it; remove the link (or use another project name)") from None
        for folder in ("",) + SUBFOLDERS:
            try:
                entries = list(os.scandir(os.path.join(self.root, folder)))
            except OSError:
                continue
            for entry in entries:  # the entry's type comes with the listing: a movie's 10000 keyframes cost no stat
                rel = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    if entry.is_symlink():
                        resolve_inside(self.root, rel)
                    plain = entry.is_file() or entry.is_dir()
                except UnsafePathError:
                    raise UnsafePathError(f'the project folder {self.root}: "{rel}" is a link that leads outside it; '
                                          "remove it (or use another project name)") from None
                except OSError:
                    continue  # removed meanwhile
                if not plain and os.path.exists(entry.path):
                    raise UnsafePathError(f'the project folder {self.root}: "{rel}" is neither a file nor a folder (a '
                                          "named pipe or a device); remove it (or use another project name)")

    def removed_temp_files_note(self) -> str:
        """A line for a node's summary about the temporary files an interrupted run left (empty when none)."""
        text = removed_temp_files_text(self.removed_temp_files, "an interrupted run left")
        return f"\n{text}" if text else ""

    @staticmethod
    def root_of(output_dir: str, folder: str) -> str:
        """The project folder ``folder`` (``folder_for``'s answer) inside ``output_dir``; found, not created."""
        return resolve_inside(output_dir, f"{PROJECTS_DIR}/{folder}")

    @staticmethod
    def folder_for(output_dir: str, name: str) -> str:
        """``project_folder_name(name)``, or the folder an earlier version gave it when that folder's manifest says it
        is this project, so it resumes: a non-ASCII name's cleaned part alone (``Am_lie`` for ``Amélie``), or a long
        name cut to a trailing space or dot."""
        folder = project_folder_name(name)
        for legacy in dict.fromkeys([safe_folder_name(name, fallback="movie"), legacy_folder_name(name)]):
            if legacy and legacy != folder and not is_windows_device_name(legacy) \
                    and _recorded_name(output_dir, legacy, or_title=True) == name:
                return legacy
        owner = _recorded_name(output_dir, folder)
        if owner is not None and owner != name:
            # another project's folder: two titles that clean to one name ("Hello, World" and "Hello; World"), or on
            # Windows, whose folders ignore case, "My Movie" and "my movie": the name's own hashed folder instead
            return f"{(safe_folder_name(name, fallback='') or 'movie')[:71]}-{_name_digest(name)}"
        return folder

    # ------------------------------------------------------------------------------------ manifest

    def _read_manifest(self) -> dict:
        """``manifest.json`` (``read_manifest_file``), or a new, empty manifest when there is none or it cannot be
        used: then every keyframe and shot is made again, and a manifest that was there but is damaged, too large or
        of another format is named in the log (before, the project silently started over)."""
        try:
            data = read_manifest_file(self.manifest_path, inside=self.root)
            if data.get("format") == PROJECT_FORMAT_VERSION:
                data.setdefault("keyframes", {})
                data.setdefault("shots", {})
                return data
            problem = f"{self.manifest_path} is of another format ({str(data.get('format'))[:20]!r})"
        except FileNotFoundError:  # a new project
            problem = None
        except OSError as e:
            problem = f"{self.manifest_path} cannot be read ({e.strerror or e})"
        except ValueError as e:
            problem = str(e)[:300]
        if problem:
            log.warning("MovieDreamer: %s; the project starts afresh: every keyframe and shot is made again", problem)
        return {"format": PROJECT_FORMAT_VERSION, "project": self.name, "keyframes": {}, "shots": {}}

    def _writer_journals(self) -> list[str]:
        folder = os.path.join(self.root, WRITER_JOURNALS_DIR)
        return [os.path.join(folder, n) for n in _listdir(folder) if n.endswith(".jsonl")]

    def _replay_journal(self, path: str, data: Optional[bytes] = None) -> None:
        """Apply a journal's lines to the manifest read from ``manifest.json``; a line cut short by a kill (or
        anything else that does not parse) is skipped."""
        if data is None:
            try:
                data = read_regular(path, inside=self.root)
            except OSError:
                return
        for line in data.split(b"\n"):
            try:
                record = loads_json(line)
            except ValueError:  # cut short, or nested too deeply (text_files.NestedTooDeeply)
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), list) and record["key"]:
                self._apply(tuple(record["key"]), record.get("value"), "value" in record)

    def _apply(self, key: tuple, value, present: bool) -> None:
        """Set (``present``) or remove the entry at ``key``: ``("title",)`` or ``("keyframes", "12")``."""
        target = self.manifest
        for part in key[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                return
        if present:
            target[key[-1]] = value
        else:
            target.pop(key[-1], None)

    def _set(self, key: tuple, value=None, present: bool = True) -> None:
        """Change one entry of the manifest and append the change to the journal: one line, one ``write``, whatever
        the manifest's size (the file is opened for each line, so a journal removed by ``compact`` is simply begun
        again). Not fsynced: after a power cut the last keyframes or shots may be made again."""
        self._apply(key, value, present)
        record = {"key": list(key), **({"value": value} if present else {})}
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"
        path = self.writer_journal_path or self.journal_path
        if self.writer_journal_path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with write_errors_named(path):
            fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, inside=self.root)
            try:
                if self.writer_journal_path and fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # the gathering master reads and empties it under the same lock
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    def compact(self) -> None:
        """Write the whole manifest to ``manifest.json`` (atomically, fsynced) and remove the journal; the writers'
        journals are read again under their locks, folded in, and emptied once ``manifest.json`` holds them. A
        writer's project does nothing here: its journal is the master's to fold in."""
        if self.writer is not None:
            return
        held = []
        try:
            folded = False
            for path in self._writer_journals():
                try:
                    fd = open_regular(path, os.O_RDWR, inside=self.root)
                except OSError:
                    continue
                held.append(fd)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                with os.fdopen(os.dup(fd), "rb") as f:
                    data = f.read()
                folded = folded or bool(data)
                self._replay_journal(path, data)
            if not folded and not os.path.exists(self.journal_path):
                return  # nothing changed since manifest.json was written: a finished project may be read-only
            self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8"))
            for fd in held:
                os.ftruncate(fd, 0)
        finally:
            for fd in held:
                os.close(fd)  # closing releases the lock
        try:
            os.remove(self.journal_path)
        except FileNotFoundError:
            pass

    #: The name earlier versions used for ``compact``.
    save_manifest = compact

    @contextmanager
    def compacting(self) -> Iterator["MovieProject"]:
        """``compact`` when the block ends, also when it fails or is cancelled, then ``close``. When it fails, the
        block's error is the one raised: a ``compact`` that fails as well (the same full disk, the same read-only
        folder) is logged, not chained in its place, so the user reads what went wrong first and where."""
        try:
            try:
                yield self
            except BaseException:
                try:
                    self.compact()
                except OSError:
                    log.warning("MovieDreamer: the manifest of %s could not be compacted after the error below",
                                self.root, exc_info=True)
                raise
            self.compact()
        finally:
            self.close()

    def waited_note(self) -> str:
        """A line for a node's summary when this opening waited for another process (empty when it did not)."""
        return (f"\nwaited {self.waited:.0f} s for another process that was making this project" if self.waited >= 1
                else "")

    def set_script(self, script_hash: str, title: str) -> None:
        """Record which script this project renders. Entries of an earlier version of the script stay: each one's
        signature says whether it still fits, so an edit re-renders only what it changed."""
        if self.manifest.get("script_hash") != script_hash:
            self._set(("script_hash",), script_hash)
        if self.manifest.get("title") != title:
            self._set(("title",), title)

    def set_movie(self, entry: Optional[dict]) -> None:
        """Record the assembled movie (``None``: there is none)."""
        self._set(("movie",), entry, present=entry is not None)

    # ------------------------------------------------------------------------------- stale work

    def _move_aside(self, rels: Iterable[str]) -> list[str]:
        """Move files (relative names) into one ``stale/<time>/`` folder, keeping their relative paths."""
        rels = [r for r in dict.fromkeys(rels) if os.path.isfile(os.path.join(self.root, r))]
        if not rels:
            return []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = os.path.join(self.root, STALE_DIR, stamp)
        n = 1
        while os.path.exists(dest):
            n += 1
            dest = os.path.join(self.root, STALE_DIR, f"{stamp}-{n}")
        for rel in rels:
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            replace_patiently(os.path.join(self.root, rel), target)  # a player may hold an old shot open (Windows)
        return [f"{STALE_DIR}/{os.path.basename(dest)}/{rel}" for rel in rels]

    def _primary_only(self, what: str) -> None:
        if self.writer is not None:
            raise RuntimeError(f"{what}: only the master's gathering step moves files aside, not a participant ({self.writer})")

    def retire_keyframes(self, count: int) -> list[str]:
        """The storyboard now has ``count`` keyframes: the entries and files of keyframes from ``count`` on move to
        ``stale/`` and leave the manifest. Returns the new places of the moved files."""
        self._primary_only("retire_keyframes")
        gone = [k for k in self.manifest["keyframes"] if not k.isdigit() or int(k) >= count]
        files = []
        for name in _listdir(os.path.join(self.root, "keyframes")):
            found = project_file(f"keyframes/{name}")
            if found and found[1] >= count:
                files.append(f"keyframes/{name}")
        for k in gone:
            self._set(("keyframes", k), present=False)
        return self._move_aside(files)

    def retire_shots(self, shot_files: dict[int, str]) -> list[str]:
        """The script's shots now are ``{shot index: its file}``: shots past the end, and shots filed under another
        shot's name (the script was re-ordered or an id changed), move to ``stale/`` with their preview sidecars and
        leave the manifest; so does an assembled movie made of other shots. Returns the new places of the files."""
        self._primary_only("retire_shots")
        files, gone = [], []
        for key, entry in self.manifest["shots"].items():
            index = int(key) if key.isdigit() else -1
            if shot_files.get(index) != entry.get("file"):
                gone.append(key)
                files += [entry.get("file", ""), self.sidecar_file(index)]
        expected = set(shot_files.values()) | {self.sidecar_file(i) for i in shot_files}
        for name in _listdir(os.path.join(self.root, "shots")):
            if project_file(f"shots/{name}") and f"shots/{name}" not in expected:
                files.append(f"shots/{name}")
        for key in gone:
            self._set(("shots", key), present=False)
        movie = self.manifest.get("movie")
        ordered = [shot_files[i] for i in sorted(shot_files)]
        if movie and movie.get("shots") != ordered:
            files.append(movie.get("file", ""))
            self.set_movie(None)
        return self._move_aside(f for f in files if f)

    # ----------------------------------------------------------------------------------- keyframes

    # --------------------------------------------------------------------------------------- shots

    def shot_file(self, index: int, shot_id: str) -> str:
        return shot_file(index, shot_id)

    def shot_entry(self, index: int, signature: str) -> Optional[dict]:
        """The manifest entry of a shot finished with this signature (its file is not checked here), or ``None``."""
        entry = self.manifest["shots"].get(str(index))
        if not entry or entry.get("signature") != signature or entry.get("status") != "done":
            return None
        return entry

    @staticmethod
    def shot_info(entry: dict) -> dict:
        """What of a shot's entry (``record_shot``'s, or a participant's) is its info (``SHOT_INFO_KEYS``): what a
        shot recorded again keeps."""
        return {k: v for k, v in entry.items() if k in SHOT_INFO_KEYS}

    def record_shot(self, index: int, rel: str, signature: str, info: dict, sha256: Optional[str] = None) -> None:
        """Record a finished shot, with its file's size and modification time (``shot_check``) and the SHA-256 of
        its bytes (``sha256`` when the caller knows it, else read from the file): a shot file replaced by another of
        the same length is found by its bytes, not taken for this shot."""
        path = os.path.join(self.root, rel)
        st = os.stat(path)
        self._set(("shots", str(index)), {"status": "done", "file": rel, "signature": signature,
                                          "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                                          "sha256": sha256 or file_sha256(path), **info})

    def shot_check(self, index: int, signature: str) -> Optional[str]:
        """Whether shot ``index``, if recorded with this signature, may be reused: ``None`` (no such entry), else its
        file's ``file_check``."""
        entry = self.shot_entry(index, signature)
        return None if entry is None else self.file_check(("shots", str(index)), entry)

    def file_check(self, key: tuple, entry: dict) -> str:
        """Whether the file of the manifest entry at ``key`` (a shot's, the movie's) is what was written:
        ``"unchanged"`` (the same size and modification time, read no further; or, where only the time changed, as when
        a project is copied or restored, the same SHA-256, and the new time is recorded so that the next rerun need
        not read it), ``"replaced"`` (other bytes, or no file) or ``"unverified"`` (touched, and an entry of an
        earlier version that kept no SHA-256: the caller checks it otherwise)."""
        path = os.path.join(self.root, entry["file"])
        try:
            st = os.stat(path)
            if st.st_size == entry.get("bytes") and st.st_mtime_ns == entry.get("mtime_ns"):
                return "unchanged"
            if "sha256" not in entry:
                return "unverified"
            if st.st_size != entry.get("bytes") or file_sha256(path) != entry["sha256"]:
                return "replaced"
        except OSError:
            return "replaced"
        self._remember_stat(key, entry, st)
        return "unchanged"

    def _remember_stat(self, key: tuple, entry: dict, st: os.stat_result) -> None:
        """Record a file's new modification time in its entry (its bytes were checked by SHA-256), so the next rerun
        need not read it again; best effort: a project on read-only storage (copied or restored there) is read, not
        written, and is checked by SHA-256 again next time."""
        try:
            self._set(key, {**entry, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
        except OSError as e:
            log.info("MovieDreamer: %s: the new time of a checked file is not recorded (%s)", self.root, e)

    def sidecar_file(self, index: int) -> str:
        return f"shots/shot_{index:05d}.preview.safetensors"

    def save_shot_sidecar(self, index: int, signature: str, preview: list) -> list:
        """Keep a shot's small preview frames beside it, so a rerun need not decode the shot again. Each frame is
        stored as a JPEG (quality ``PREVIEW_JPEG_QUALITY``: a few kB, a small part of the shot's own file); returns
        the frames as they read back, which is what the movie's preview shows on this run and on every rerun."""
        from safetensors.numpy import save

        encoded = [_jpeg(frame) for frame in preview]
        tensors = {f"preview_{i:04d}": np.frombuffer(data, dtype=np.uint8) for i, data in enumerate(encoded)}
        tensors = tensors or {"empty": np.zeros(0, np.uint8)}
        atomic_write_bytes(os.path.join(self.root, self.sidecar_file(index)),
                           save(tensors, {"signature": signature, "preview": "jpeg"}))
        return [_unjpeg(data) for data in encoded]

    def shot_sidecar(self, index: int, signature: str) -> Optional[dict]:
        """``{"preview": [small frames]}`` kept for this signature, or ``None``. (Sidecars of earlier versions, with
        raw frames and the shot's last frame, still read.)"""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.path.join(self.root, self.sidecar_file(index)), framework="np") as f:
                if (f.metadata() or {}).get("signature") != signature:
                    return None
                if "preview" in f.keys():
                    return {"preview": list(f.get_tensor("preview"))}
                names = sorted(k for k in f.keys() if k.startswith("preview_"))
                return {"preview": [_unjpeg(f.get_tensor(k).tobytes()) for k in names]}
        except (OSError, SafetensorError, KeyError, ValueError):
            return None

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def keyframe_file(self, index: int) -> str:
        return keyframe_file(index)

    def keyframe_entry_signature(self, index: int) -> Optional[str]:
        """The signature keyframe ``index`` was recorded with, or ``None``."""
        return (self.manifest["keyframes"].get(str(index)) or {}).get("signature")

    def done_keyframe(self, index: int, signature: str) -> Optional[np.ndarray]:
        """Keyframe ``index``'s picture when it is made for ``signature`` (else ``None``): its entry says so and its
        file is whole and, when the entry records the file's SHA-256 (keyframes saved by this version), holds those
        very bytes: a keyframe changed on disk (edited, replaced, damaged to another valid picture) is made again, not
        reused or sent on. The file is read once, for the check and the picture."""
        entry = self.manifest["keyframes"].get(str(index))
        if not entry or entry.get("signature") != signature or entry.get("status") != "done":
            return None
        return self.load_keyframe(index, sha256=entry.get("sha256"))

    def keyframe_done(self, index: int, signature: str) -> bool:
        """``done_keyframe`` as a yes or no."""
        return self.done_keyframe(index, signature) is not None

    def load_keyframe(self, index: int, sha256: Optional[str] = None) -> Optional[np.ndarray]:
        """Keyframe ``index``'s picture, or ``None`` when its file is missing, unreadable or (with ``sha256``) not
        the bytes that were saved."""
        try:
            return read_keyframe(os.path.join(self.root, self.keyframe_file(index)), sha256)
        except (KeyframeChanged, *UNREADABLE_IMAGE):  # a file put there since: made again
            return None

    def save_keyframe(self, index: int, image: np.ndarray, signature: str, info: dict, latent=None) -> str:
        """Write keyframe ``index`` (``uint8 [H, W, 3]``), optionally its latent (a tensor, as safetensors, so a
        rerun need not encode the image again), and its manifest entry; returns the file name."""
        rel = self.keyframe_file(index)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        if latent is not None:
            self.save_keyframe_latent(index, latent, signature)
        atomic_write_bytes(os.path.join(self.root, rel), buf.getvalue())
        self.record_keyframe(index, signature, {**info, "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
        return rel

    def record_keyframe(self, index: int, signature: str, info: dict) -> None:
        """The manifest entry of keyframe ``index``, whose image (``keyframe_file``) is written."""
        self._set(("keyframes", str(index)), {"status": "done", "file": self.keyframe_file(index),
                                              "signature": signature, **info})

    @staticmethod
    def keyframe_info(entry: dict) -> dict:
        """What of a keyframe's entry (``record_keyframe``'s, or a participant's) is its info: all but what
        ``record_keyframe`` writes itself (``KEYFRAME_RECORD_KEYS``); what a keyframe recorded again keeps."""
        return {k: v for k, v in entry.items() if k not in KEYFRAME_RECORD_KEYS}

    def keyframe_entry(self, index: int) -> Optional[dict]:
        """Keyframe ``index``'s manifest entry, or ``None``."""
        return self.manifest["keyframes"].get(str(index))

    def record_keyframe_identity(self, index: int, report: dict) -> None:
        """Add the identity report (``identity_report.py``) to keyframe ``index``'s entry, which must exist: one journal
        line. Re-recording the keyframe (``record_keyframe``) replaces the whole entry, report included."""
        if str(index) not in self.manifest["keyframes"]:
            raise KeyError(f"keyframe {index} has no manifest entry to add an identity report to")
        self._set(("keyframes", str(index), "identity"), report)

    def latent_file(self, index: int) -> str:
        return f"keyframes/keyframe_{index:05d}.latent.safetensors"

    def save_keyframe_latent(self, index: int, latent, signature: str) -> None:
        """Keep keyframe ``index``'s latent for ``signature`` beside its image: written with the keyframe, and again
        when a rerun had to encode the image because the file was missing or damaged (else it would encode it on
        every rerun)."""
        from safetensors.torch import save

        atomic_write_bytes(os.path.join(self.root, self.latent_file(index)),
                           save({"latent": latent.detach().float().cpu().contiguous()}, {"signature": signature}))

    def load_keyframe_latent(self, index: int, signature: str):
        """The latent saved with keyframe ``index`` if it was saved for this ``signature``, else ``None``."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.path.join(self.root, self.latent_file(index)), framework="pt") as f:
                if (f.metadata() or {}).get("signature") != signature:
                    return None
                return f.get_tensor("latent").clone()  # not a view of the file's memory map: Windows refuses to
                # replace a mapped file, and a cached output may hold this latent when its keyframe is made again
        except (OSError, SafetensorError, KeyError):
            return None


#: The kind of file a manifest entry of each table may name (``PROJECT_FILES``): a keyframe's image, a shot's video.
_ENTRY_FILE = {"keyframes": "keyframe", "shots": "shot"}
#: A manifest entry's key: its keyframe's or shot's index as ``str(index)`` writes it (ASCII digits, no leading zero,
#: at most the eight digits a file name's index has), so that ``int(key)`` is bounded and is the index the pack
#: looks the entry up by (``"03"`` was kept and never found; ``int`` of a 5,000-digit key raised in ``retire_keyframes``).
_ENTRY_KEY = re.compile(r"0|[1-9][0-9]{0,7}")


def _entry_problem(table: str, key: str, entry) -> Optional[str]:
    """Why the entry ``key`` of ``table`` (``keyframes``, ``shots``) is not one the pack writes, in words to follow its
    name ("" when its name says enough), or ``None`` when it is one. Its ``file``, when it has one, must be the project's
    own name for a file of that table's kind (``_ENTRY_FILE``) and of the entry's own index: an entry of shot 2 naming
    ``shots/shot_00007_x.mp4`` (a manifest edited, or damaged) put shot 7's video into the movie as shot 2 on a resume,
    and had ``retire_shots`` move shot 7's good video aside; keyframe 3's naming keyframe 5's file is as damaged."""
    if not (_ENTRY_KEY.fullmatch(key) and isinstance(entry, dict)):
        return ""
    file = entry.get("file")
    if file is None:  # as the checks before this one let pass: it names no other item's file
        return None
    found = project_file(file)
    if found is None or found[0] != _ENTRY_FILE[table]:
        return ""
    if found[1] != int(key):
        return f" (the file of {found[0]} {found[1]})"
    return None


def _drop_unusable_entries(manifest: dict) -> list[str]:
    """Remove from ``manifest`` (read from a folder edited by hand or made elsewhere) what no version of the pack
    writes and the nodes would trip over or follow out of the folder or to another item's file: a ``keyframes``/
    ``shots`` table that is not an object, an entry that is not an object or is keyed by no index (``_ENTRY_KEY``), a
    ``file`` that is not the project's own name for the entry's keyframe or shot (``../../x``, an absolute path: moved
    aside or read wherever it pointed; another index's file: ``_entry_problem``), a ``movie`` entry likewise.
    Returns what was dropped, in words (``shots['2'] (the file of shot 7)``). Dropped work is simply made again."""
    dropped = []
    for kind in ("keyframes", "shots"):
        table = manifest.get(kind)
        if not isinstance(table, dict):
            dropped.append(f"{kind} (not an object)")
            manifest[kind] = {}
            continue
        for key in list(table):
            problem = _entry_problem(kind, key, table[key])
            if problem is not None:
                dropped.append(f"{kind}[{key[:20]!r}]{problem}")
                del table[key]
    movie = manifest.get("movie")
    if movie is not None and not (isinstance(movie, dict) and is_movie_file(movie.get("file"))):
        dropped.append("movie")
        del manifest["movie"]
    return dropped


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buf.getvalue()


def _unjpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).copy()


def _listdir(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def folder_state(output_dir: str, name: str, *, listed: Iterable[str] = (), sized: Iterable[str] = (),
                 movie: bool = False) -> str:
    """A digest of what project ``name``'s folder holds now, for a node's fingerprint on the host (so that a server
    that kept a node's outputs runs it again when its files changed on disk: a keyframe or shot deleted or
    replaced, the folder removed). ``listed``: subfolders whose every file counts by name, size and modification
    time; ``sized``: files of the folder that count only by size (such as the storyboard sheet, whose time an
    earlier version changed on every run with the same bytes); ``movie``: the assembled
    movie (``<folder>.mp4``) counts by size too. Reads, never creates."""
    h = hashlib.sha256()
    try:
        folder = MovieProject.folder_for(output_dir, name)
        root = MovieProject.root_of(output_dir, folder)
    except (UnsafePathError, OSError, ValueError) as e:
        return f"unusable: {e}"
    sized = [*sized, *([f"{folder}.mp4"] if movie else [])]
    for sub in listed:
        try:
            with os.scandir(os.path.join(root, sub)) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    st = entry.stat(follow_symlinks=False)
                    h.update(f"{sub}/{entry.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{sub}: none\n".encode())
    for rel in sized:
        try:
            h.update(f"{rel}:{os.stat(os.path.join(root, rel)).st_size}\n".encode())
        except OSError:
            h.update(f"{rel}: none\n".encode())
    return h.hexdigest()
