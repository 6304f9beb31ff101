"""A dataset folder's movie records (``OUT/movies/<name>.json``, ``moviedreamer_core/data/store.py``) that the builder did
not write: one too large to be a record, or a link to an endless device, is no record (the film is built again), as
one cut short or nested too deeply already was (``test_json_nested.py``). Records used to be read whole, whatever
their size."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

STAMP = {"size": 1, "mtime_ns": 2}


def _dataset(tmp_path, records: dict):
    """A dataset folder whose ``movies/`` holds one good film and its record, and the given extra records (text, or a
    path the record is a link to)."""
    from moviedreamer_core.data.store import MOVIES

    out = tmp_path / "data"
    (out / MOVIES).mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(out / MOVIES / "good.safetensors"))
    (out / MOVIES / "good.json").write_text(json.dumps({"movie": f"{MOVIES}/good.safetensors", "source": "good.mp4",
                                                        "stamp": STAMP}))
    for name, text in records.items():
        if isinstance(text, os.PathLike):
            os.symlink(text, out / MOVIES / f"{name}.json")
        else:
            (out / MOVIES / f"{name}.json").write_text(text)
    return str(out)


def test_a_movie_record_larger_than_the_bound_is_no_record_and_is_not_read_whole(tmp_path, monkeypatch):
    """A record over ``MAX_RECORD_BYTES`` (lowered here to 4 kB, so the test writes little) is refused by its size: its
    film is not finished, not listed, and its source keeps no name. ``/dev/zero`` linked in as a record is refused
    after ``MAX_RECORD_BYTES`` + 1 bytes (before, ``f.read()`` of it filled memory until the build died)."""
    from pathlib import Path

    from moviedreamer_core.data import store

    big = {"movie": f"{store.MOVIES}/big.safetensors", "source": "big.mp4", "stamp": STAMP, "keyframes": ["x" * 5000]}
    records = {"big": json.dumps(big)}
    if os.path.exists("/dev/zero"):
        records["zero"] = Path("/dev/zero")
    out = _dataset(tmp_path, records)
    save_file({"x": torch.zeros(1)}, os.path.join(out, store.MOVIES, "big.safetensors"))
    assert store.is_finished(out, "big", STAMP), "under the real bound the record is a record"

    monkeypatch.setattr(store, "MAX_RECORD_BYTES", 4096)
    assert not store.is_finished(out, "big", STAMP)
    assert not store.is_finished(out, "zero", STAMP)
    assert store.finished_movies(out) == ["movies/good.safetensors"]
    assert store.movie_names(["big.mp4", "big.mkv"], out) == {"big.mp4": "big", "big.mkv": "big-" + _digest("big.mkv")}
    assert store.is_finished(out, "good", STAMP)


def _digest(rel: str) -> str:
    import hashlib

    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:8]


def test_the_record_bound_is_generous_for_a_long_film():
    """A record of 10,000 keyframes, each with a long caption and a cast, is far below the bound (the bound refuses
    files that are not records, never a real film's)."""
    from moviedreamer_core.data.store import MAX_RECORD_BYTES

    keyframe = {"shot": 1234, "frame": 123456, "time": 5143.2, "action": "A" * 400, "scene": "S" * 200,
                "characters": ["char_00", "char_01", "char_02"], "caption_source": "sidecar", "faces": 3}
    record = {"shots": [{"start": 1, "end": 2}] * 5000, "keyframes": [keyframe] * 10_000}
    assert len(json.dumps(record, indent=1)) * 10 < MAX_RECORD_BYTES


@pytest.mark.parametrize("movie", ["{elsewhere}/good.safetensors", "../elsewhere/good.safetensors",
                                   "movies/good.safetensors", "movies/other.safetensors", "movies"])
def test_a_record_whose_movie_is_not_its_own_file_is_not_finished(tmp_path, movie):
    """The builder writes ``movies/<name>.safetensors`` into ``<name>.json``, nothing else. A record naming another file
    (a path outside the dataset, another film's file) is a damaged record: its film is built again and the file is not
    listed in the index. Before, any file's absolute path was counted finished and went into ``index.json`` as a movie,
    and another film's file was listed twice."""
    from moviedreamer_core.data.store import MOVIES, finished_movies, is_finished

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_file({"x": torch.zeros(1)}, str(elsewhere / "good.safetensors"))
    movie = movie.format(elsewhere=elsewhere)
    out = _dataset(tmp_path, {"bad": json.dumps({"movie": movie, "source": "bad.mp4", "stamp": STAMP})})
    save_file({"x": torch.zeros(1)}, os.path.join(out, MOVIES, "other.safetensors"))
    assert not is_finished(out, "bad", STAMP)
    assert finished_movies(out) == ["movies/good.safetensors"]
