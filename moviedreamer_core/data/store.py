"""The dataset folder: the planner's format (``planner.train``) plus one JSON record per video.

::

    OUT/index.json                 written by ``planner.train.write_index`` after every finished video
    OUT/movies/<name>.safetensors  one movie (``planner.train.save_movie``), written to a temporary file
                                   and renamed into place
    OUT/movies/<name>.json         what the builder found (shots, keyframes, cast, captions) and the
                                   source's size and modification time; written last, it marks the
                                   video as finished, so a rerun skips it

``<name>`` is the video's path relative to the input folder, without extension, ``/`` replaced by ``__`` (and a
digest of the path when two videos would share a name: ``movie_names``).
An interrupted build leaves at most temporary files (``movies/.tmp_*``) beside whole ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile

from ..files import atomic_write_text
from ..planner.inputs import Story
from ..planner.train import MAX_INDEX_BYTES, save_movie, write_index
from ..text_files import loads_json, read_json_object, read_text_file

MOVIES = "movies"
#: The largest movie record (``movies/<name>.json``) read. A record lists a film's shots and keyframes with their texts,
#: a few hundred bytes a keyframe: a feature film with thousands of keyframes is a few MB, and even captions as large
#: as a sidecar may be (``captions.MAX_SIDECAR_BYTES``, 64 MB) fit twice. A larger file is not a record the builder
#: wrote; it is no record (the film is built again) and is never read into memory whole (``/dev/zero`` linked in).
MAX_RECORD_BYTES = 128 * 2**20


class DatasetSpaceError(ValueError):
    """OUT already holds a dataset built with other encoders."""


def movie_name(relpath: str) -> str:
    stem = os.path.splitext(relpath)[0].replace(os.sep, "/")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("._") or "movie"


def movie_names(relpaths: list[str], out: str) -> dict[str, str]:
    """Each video's movie name: ``movie_name``, unless two videos clean to one name (``my film.mp4`` and
    ``my_film.mp4``, ``a.mp4`` and ``a.mkv``, two names of other scripts only, or names differing in case, which are
    one file on Windows and macOS): then the video an earlier build made that movie from keeps it (else the first in
    order) and each other one gets the name plus 8 hex digits of its path's hash. Before, such videos overwrote each
    other's movie on every build, without a word (an audit)."""
    plain = {rel: movie_name(rel) for rel in relpaths}
    case_twins = len({n.casefold() for n in plain.values()}) < len(set(plain.values()))
    fold = str.casefold if case_twins and _case_blind(os.path.join(out, MOVIES)) else str  # probed only when it matters
    groups: dict[str, list[str]] = {}
    for rel in relpaths:
        groups.setdefault(fold(plain[rel]), []).append(rel)
    names = {}
    for members in groups.values():
        hashed = {m: f"{plain[m]}-{hashlib.sha256(_slashed(m).encode('utf-8')).hexdigest()[:8]}" for m in members}
        # a video an earlier build filed under its hashed name keeps it (when the other video is gone, too: taking the
        # plain name back would build it again and list it twice)
        kept = {m for m in members if _slashed(_recorded_source(out, hashed[m])) == _slashed(m)}
        rest = [m for m in members if m not in kept]
        owner = next((m for m in rest if _slashed(_recorded_source(out, plain[m])) == _slashed(m)),
                     rest[0] if rest else None)
        for rel in members:
            names[rel] = plain[rel] if rel == owner else hashed[rel]
    return names


def _slashed(rel) -> str:
    """A relative path with ``/`` between its parts, as records written on any system are compared."""
    return str(rel or "").replace("\\", "/").replace(os.sep, "/")


def _case_blind(folder: str) -> bool:
    """Whether ``folder``'s disk takes ``A`` and ``a`` for one name (Windows, macOS): names differing in case collide
    there only (elsewhere an earlier build made them two movies, which keep their names)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".case_probe_", dir=folder)
    except OSError:  # read-only storage: what its system's disks usually do
        return sys.platform in ("win32", "darwin")
    os.close(fd)
    try:
        twin = os.path.join(folder, os.path.basename(probe).upper())
        return twin != probe and os.path.exists(twin)
    finally:
        os.remove(probe)


def _record(path: str) -> dict:
    """A movie's record (``movies/<name>.json``), or ``{}`` when it cannot be read, is larger than ``MAX_RECORD_BYTES``,
    is not JSON (cut short by a kill, nested thousands deep) or is not an object: a damaged record is no record, and the
    movie is built again; its ``source`` only when it is text, its ``movie`` only when it is this record's own movie
    file (``movies/<name>.safetensors``, the only one ``write_movie`` writes there)."""
    try:
        record = loads_json(read_text_file(path, MAX_RECORD_BYTES))  # bounded: it was read whole, whatever its size
    except (OSError, ValueError):  # text_files.TextFileError (unreadable, too large, not UTF-8) is a ValueError
        return {}
    if not isinstance(record, dict):
        return {}
    # a source that is not text is not said (a hand-edited record's ``"movie": 5`` made ``is_finished`` and
    # ``finished_movies`` stop with a TypeError); nor a movie that is not this record's own file: any file's path there
    # ("/etc/hostname", "../x", another film's file) was counted finished and listed in index.json as a movie
    own = f"{MOVIES}/{os.path.basename(path)[:-len('.json')]}.safetensors"
    return {key: value for key, value in record.items()
            if (key != "source" or isinstance(value, str)) and (key != "movie" or value == own)}


def _recorded_source(out: str, name: str):
    return _record(_record_path(out, name)).get("source")


def source_stamp(path: str) -> dict:
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _record_path(out: str, name: str) -> str:
    return os.path.join(out, MOVIES, name + ".json")


def is_finished(out: str, name: str, stamp: dict) -> bool:
    """Whether ``name`` was built from this very file (same size and modification time) and is complete."""
    record = _record(_record_path(out, name))
    return record.get("stamp") == stamp and os.path.isfile(os.path.join(out, record.get("movie", "")))


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def write_movie(out: str, name: str, story: Story, spaces: dict, character_names: list, record: dict) -> str:
    """Write the movie then its record, each atomically; returns the movie's path relative to ``out``."""
    rel = f"{MOVIES}/{name}.safetensors"
    save_movie(os.path.join(out, rel), story, spaces, character_names)  # atomic (files.save_safetensors)
    _write_json(_record_path(out, name), {**record, "movie": rel})
    return rel


def finished_movies(out: str) -> list[str]:
    """Relative paths of every finished movie in ``out``, sorted."""
    folder = os.path.join(out, MOVIES)
    if not os.path.isdir(folder):
        return []
    rels = []
    for file in sorted(os.listdir(folder)):
        if file.endswith(".json") and not file.startswith("."):
            rel = _record(os.path.join(folder, file)).get("movie", "")
            if rel and os.path.isfile(os.path.join(out, rel)):
                rels.append(rel)
    return rels


def existing_index(out: str):
    """``OUT/index.json`` as this command writes it, or ``None`` when there is none. Read bounded
    (``MAX_INDEX_BYTES``); a ``DatasetSpaceError`` naming the file when it is not a dataset index (not JSON, not an
    object, ``movies`` not a list of names): OUT is another program's folder, which a build must not overwrite."""
    path = os.path.join(out, "index.json")
    if not os.path.isfile(path):
        return None
    try:
        index = read_json_object(path, MAX_INDEX_BYTES)
    except ValueError as e:
        raise DatasetSpaceError(f"{e}; {out} is not a dataset folder: use a new output folder") from None
    movies = index.get("movies")
    if not isinstance(movies, list) or not all(isinstance(m, str) for m in movies):
        raise DatasetSpaceError(f"{path}: movies must be a list of file names; {out} is not a dataset folder: use a "
                                "new output folder")
    return index


def check_spaces(out: str, spaces: dict) -> None:
    """Refuse to add movies encoded with other encoders to an existing dataset (the planner reads one space)."""
    index = existing_index(out)
    if index is None:
        return
    for key, value in spaces.items():
        if key in index and index[key] != value and index.get("movies"):
            raise DatasetSpaceError(f"{out} was built with {key} {index[key]}, but this run's encoder gives {value}: "
                                    "use a new output folder or the same encoders")


def recorded_spaces(out: str):
    """The three spaces a finished movie of ``out`` was encoded in (its file's metadata), or ``None``: what a rerun
    with nothing left to build writes the index with."""
    from ..planner.movie_checks import MovieFileError, read_movie_file
    from ..spaces import SPACE_KEYS

    for rel in finished_movies(out):
        try:
            meta, _ = read_movie_file(os.path.join(out, rel), lambda f: None)
        except MovieFileError:
            continue
        if all(isinstance(meta.get(k), dict) for k in SPACE_KEYS):
            return {k: meta[k] for k in SPACE_KEYS}
    return None


def update_index(out: str, spaces: dict) -> int:
    """Rewrite ``index.json`` (atomically) listing every finished movie, unless it lists them already (a rerun with
    nothing to build writes nothing, so a finished dataset may sit on read-only storage); returns how many."""
    movies = finished_movies(out)
    try:
        index = existing_index(out)
    except DatasetSpaceError:  # checked before the build began (build_dataset); written over as the build's own
        index = None
    if index is not None and index.get("movies") == movies and all(index.get(k) == v for k, v in spaces.items()):
        return len(movies)
    os.makedirs(out, exist_ok=True)
    write_index(out, movies, spaces)
    return len(movies)
