"""The whole build: find videos, skip finished ones, run the rest in worker processes, keep the index current.

Each video is one job (``movie.build_movie``) in a worker process (``spawn``, so no state leaks from the
parent and dlib/torch start clean); a worker loads the encoders and the face embedder once. Finished movies
are written by the worker (atomically, see ``store``), then the parent rewrites ``index.json``, so the
dataset on disk is usable at every moment and a rerun continues where the last one stopped. A video that
cannot be decoded, or whose sidecar is malformed, is logged (``skipped <file>: <reason>``) and the build
goes on; it is retried by the next run.

Encoders cross the process boundary as *specs*: folder paths, ``module:function`` strings or picklable
zero-argument factories (``BuildOptions``). Encoder objects work too, with ``workers=1`` (in-process).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Optional

from ..files import remove_stale_temp_files, removed_temp_files_text
from .captions import load_captioner
from .characters import load_references
from .encoders import EncoderFolderError, resolve_text_encoder, resolve_token_encoder
from .movie import MovieSettings, build_movie
from .progress import Progress
from .store import (MOVIES, check_spaces, existing_index, is_finished, movie_name, movie_names, recorded_spaces, source_stamp,
                    update_index, write_movie)
from .video import VIDEO_EXTENSIONS, VideoReadError

log = logging.getLogger("moviedreamer.data")


@dataclass
class BuildOptions:
    text_encoder: Any = None  # folder, "minilm", "module:function", factory or TextEncoder
    token_encoder: Any = None  # CLIPVisionModelWithProjection folder, "module:function", factory or TokenEncoder
    face_embedder: Any = "dlib"  # "dlib", "module:function", factory or FaceEmbedder
    characters: Optional[str] = None  # characters/<name>/*.jpg|png
    captioner: Any = None  # "module:function" or callable(image, context) -> str
    workers: int = 1
    settings: MovieSettings = field(default_factory=MovieSettings)
    progress: bool = True


class BuildOptionError(ValueError):
    """An option of the build that cannot be used (a folder that is not there, a module:function whose module is not
    found); the message names the command's option. A traceback said it before (an audit), with workers a
    ``BrokenProcessPool`` that said nothing of the cause."""


def _factory_problem(flag: str, spec: str) -> Optional[str]:
    from importlib.util import find_spec

    module, _, name = spec.partition(":")
    if not module or not name:
        return f"{flag} {spec!r}: expected module:function"
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{flag} {spec!r}: no module {module!r} to import (module:function)"


def check_options(options: "BuildOptions") -> None:
    """Raise ``BuildOptionError`` for the first option given as text that cannot be used, before anything is built
    or a worker started (encoders given as objects or callables are the caller's)."""
    from .encoders import _is_factory_spec, check_encoder_folder

    for flag, spec, named in (("--text-encoder", options.text_encoder, ("minilm",)),
                              ("--clip-vision", options.token_encoder, ())):
        if isinstance(spec, str):
            if _is_factory_spec(spec):
                problem = _factory_problem(flag, spec)
                if problem:
                    raise BuildOptionError(problem)
            elif spec not in named and not os.path.isdir(spec):
                raise BuildOptionError(f"{flag} {spec!r}: no such folder")
    if isinstance(options.characters, str) and options.characters and not os.path.isdir(options.characters):
        raise BuildOptionError(f"--characters {options.characters!r}: no such folder")
    if isinstance(options.captioner, str):
        problem = _factory_problem("--captioner", options.captioner)
        if problem:
            raise BuildOptionError(problem)
    if isinstance(options.face_embedder, str) and options.face_embedder != "dlib":
        problem = _factory_problem("--face-embedder", options.face_embedder)
        if problem:
            raise BuildOptionError(problem.replace("module:function", "'dlib' or module:function"))
    # then what is inside the encoder folders (their small JSON files, their weights' presence): these ended in
    # tracebacks of transformers or json, with workers in a BrokenProcessPool (an audit)
    for flag, spec, kind in (("--text-encoder", options.text_encoder, "text"), ("--clip-vision", options.token_encoder, "vision")):
        if isinstance(spec, str) and not _is_factory_spec(spec) and spec != "minilm":
            try:
                check_encoder_folder(flag, spec, kind)
            except EncoderFolderError as e:
                raise BuildOptionError(str(e)) from None


@dataclass
class BuildResult:
    built: list = field(default_factory=list)  # names built in this run
    skipped: list = field(default_factory=list)  # names already finished
    failed: dict = field(default_factory=dict)  # relative path -> reason
    movies: int = 0  # movies in the index after the run


def find_videos(folder: str) -> list[str]:
    """Video files under ``folder`` (recursively, hidden entries ignored), as sorted relative paths."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"videos folder {folder!r} does not exist")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, f), folder))
    return sorted(found)


def _resolve_face_embedder(spec):
    from ..identity.base import FaceEmbedder

    if isinstance(spec, FaceEmbedder):
        return spec
    if spec in (None, "dlib"):
        from ..identity.dlib_embedder import DlibFaceEmbedder

        return DlibFaceEmbedder()
    if callable(spec):
        return spec()
    from .encoders import _from_factory

    return _from_factory(str(spec))


# ------------------------------------------------------------------------------ per process (worker)

_WORKER: dict = {}


def _init(options: BuildOptions, threads: int = 0, parent: int = 0) -> None:
    if threads:  # a worker process
        import signal

        import torch

        torch.set_num_threads(threads)
        # Ctrl-C reaches the whole process group: the parent stops the build (it cancels the videos not begun and ends
        # the workers); a worker that took it went on with the next video, so the build ran on (an audit)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _leave_with_parent(parent)
        try:
            _load(options)
        except BuildOptionError as e:
            # said by the first video handed to this worker (``_process``): an initializer's exception breaks the pool,
            # and the build stopped with a ``BrokenProcessPool`` that named neither the option nor the file (an audit)
            _WORKER["refused"] = e
        except Exception as e:  # anything else a worker cannot load (a factory's module not importable there): named too
            _WORKER["refused"] = RuntimeError(f"a worker process could not load the build's encoders: "
                                              f"{type(e).__name__}: {e}")
        return
    _load(options)


def _load(options: BuildOptions) -> None:
    """The encoders, references and captioner of ``options``, into this process's ``_WORKER``; an encoder folder
    transformers cannot load (``check_options`` read what it could) is a ``BuildOptionError``."""
    embedder = _resolve_face_embedder(options.face_embedder)
    try:
        text, token = resolve_text_encoder(options.text_encoder), resolve_token_encoder(options.token_encoder)
    except EncoderFolderError as e:
        raise BuildOptionError(str(e)) from None
    _WORKER.update(
        options=options, text=text, token=token,
        embedder=embedder, references=load_references(options.characters, embedder), captioner=load_captioner(options.captioner),
    )


def _leave_with_parent(parent: int) -> None:
    """End this worker when the build's process (``parent``, its id as the build knew it: one that died before the
    worker started is seen too) is gone: after a ``kill -9`` of the build its workers went on with the videos already
    handed to them, racing a rerun, then waited for ever holding their encoders (an audit)."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="moviedreamer-parent-watch", daemon=True).start()


def spaces_of(text, token, embedder) -> dict:
    return {"text_space": text.space.to_dict(), "identity_space": embedder.space.to_dict(), "token_space": token.space.to_dict()}


def _process(path: str, rel: str, name: str, out: str, stamp: dict) -> tuple:
    """``("ok", name, summary, spaces)`` or ``("failed", rel, reason, None)``; ``DatasetSpaceError`` propagates."""
    w = _WORKER
    if "refused" in w:  # what this worker could not load (``_init``); the build stops naming it
        raise w["refused"]
    spaces = spaces_of(w["text"], w["token"], w["embedder"])
    check_spaces(out, spaces)
    try:
        story, names, record = build_movie(path, text_encoder=w["text"], token_encoder=w["token"], face_embedder=w["embedder"],
                                           references=w["references"], captioner=w["captioner"], settings=w["options"].settings)
    except VideoReadError as e:
        return "failed", rel, f"cannot decode ({e})", None
    except ValueError as e:
        return "failed", rel, str(e), None
    except Exception as e:  # one bad video must not stop a night-long build
        return "failed", rel, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", None
    record = {**record, "source": rel, "stamp": stamp}
    write_movie(out, name, story, spaces, names, record)
    summary = f"{len(record['shots'])} shots, {story.n_keyframes} keyframes, {len(names)} characters"
    return "ok", name, summary, spaces


# ------------------------------------------------------------------------------------- the build


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a build's workers at once: the videos not begun are cancelled and the workers terminated (a video being
    encoded is lost; its movie is written only when whole, so a rerun makes it). Waiting for the pool instead ran every
    video already handed out, and a second Ctrl-C then hung in its join (an audit)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def build_dataset(videos: str, out: str, options: Optional[BuildOptions] = None) -> BuildResult:
    """Build (or continue building) the dataset in ``out`` from the videos in ``videos``.

    A build that fails (its encoders cannot be loaded, a Ctrl-C) removes the folders it created for ``out`` while they
    are still empty: before, a refused first build left an empty ``out`` behind (an audit). A folder that was there
    before, or one holding anything, is never removed (``_remove_empty``)."""
    options = options or BuildOptions()
    check_options(options)
    existing_index(out)  # another program's index.json there: refused before anything is built
    created = _created_by(out)
    os.makedirs(out, exist_ok=True)
    try:
        return _build(videos, out, options)
    except BaseException:
        _remove_empty(out, created)
        raise


def _created_by(out: str) -> Optional[str]:
    """The outermost folder ``os.makedirs(out)`` is about to create (``out`` or a missing parent), None when ``out``
    is there already."""
    created, path = None, os.path.abspath(out)
    while not os.path.lexists(path):
        created, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return created


def _remove_empty(out: str, created: Optional[str]) -> None:
    """Remove ``out`` and its parents up to ``created`` (the outermost this build created), each only while empty:
    ``os.rmdir`` refuses a folder that holds anything, so nothing written into them (by this build or anyone else) is
    ever removed."""
    if created is None:
        return
    path = os.path.abspath(out)
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == created:
            return
        path = os.path.dirname(path)


def _build(videos: str, out: str, options: BuildOptions) -> BuildResult:
    """``build_dataset`` once ``out`` is there."""
    result = BuildResult()
    # a build killed (kill -9, a crash) while it wrote a movie, its record or the index left that write's temporary
    # file, and the rerun left it for ever (an audit); only names files.atomic_path makes and nobody is writing
    removed = remove_stale_temp_files(out, os.path.join(out, MOVIES))
    if removed:
        log.info(removed_temp_files_text(removed, f"a killed build left in {out}"))
    jobs = []
    found = find_videos(videos)
    names = movie_names(found, out)
    for rel in found:
        path = os.path.join(videos, rel)
        name, stamp = names[rel], source_stamp(path)
        if name != movie_name(rel):
            log.warning("%s is built as %s: another video's name cleans to %s too", rel, name, movie_name(rel))
        if is_finished(out, name, stamp):
            result.skipped.append(name)
        else:
            jobs.append((path, rel, name, out, stamp))
    if result.skipped:
        log.info("%d videos already built, skipped", len(result.skipped))

    workers = max(1, min(int(options.workers), len(jobs)))
    if workers > 1:
        try:
            pickle.dumps(options)
        except Exception as e:
            log.warning("encoders given as objects cannot go to worker processes (%s): using one process", e)
            workers = 1

    spaces = None
    t0 = time.time()
    with Progress(len(jobs), enabled=options.progress and bool(jobs)) as bar:
        def collect(outcome):
            nonlocal spaces
            status, key, message, job_spaces = outcome
            if status == "ok":
                spaces = job_spaces
                result.built.append(key)
                update_index(out, spaces)
                log.info("built %s: %s", key, message)
            else:
                result.failed[key] = message
                log.warning("skipped %s: %s", key, message.splitlines()[0])
                log.debug("%s", message)
            bar.step(f"{key}: {message.splitlines()[0]}")

        if workers == 1:
            if jobs:
                _init(options)
            for job in jobs:
                collect(_process(*job))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init,
                                       initargs=(options, threads, os.getpid()))
            try:
                futures = [pool.submit(_process, *job) for job in jobs]  # a Ctrl-C while they start is stopped too
                for fut in as_completed(futures):
                    collect(fut.result())
            except BaseException:  # Ctrl-C, another dataset's spaces: stop now, not after every video handed out
                _stop(pool)
                raise
            pool.shutdown(wait=True)
    if spaces is None:  # nothing built now: the index still lists every finished movie (a killed run's last ones too)
        spaces = recorded_spaces(out)
        if spaces is not None:
            try:
                update_index(out, spaces)
            except OSError as e:  # a finished dataset on read-only storage, whose index is out of date
                log.warning("index.json of %s could not be written again: %s", out, e)
    if spaces is None and not os.path.isfile(os.path.join(out, "index.json")):
        log.warning("no movie could be built: no index written")
    index = existing_index(out)
    result.movies = len(index["movies"]) if index is not None else len(result.built) + len(result.skipped)
    log.info("%d built, %d already there, %d failed in %.0f s; %d movies in %s",
             len(result.built), len(result.skipped), len(result.failed), time.time() - t0, result.movies, out)
    return result
