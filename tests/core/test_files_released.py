"""Nothing the pack reads keeps its file mapped or opened read-only where Windows would refuse the next write.

safetensors' ``safe_open(..., framework="pt")`` hands out tensors that are views of the file's memory map, alive as
long as the tensors are, after the ``with`` block. Windows refuses to replace or remove a file that is still mapped:
a training continued from its state would fail at its next save, the renderer training could not remove its encoded
samples, a re-made keyframe could not replace a latent a cached output still holds. Windows' ``fsync`` refuses a
descriptor open for reading only, so every atomic write would fail there. These run on Linux, where both are
allowed, by looking at what Windows objects to: the process's mappings (``/proc/self/maps``) and the access mode of
the descriptor ``fsync`` is given."""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest
import torch

from moviedreamer_core.files import atomic_write_bytes
from moviedreamer_core.project import MovieProject
from moviedreamer_core.renderer.fit import RendererSample
from moviedreamer_core.renderer.sample_cache import load_samples, save_samples
from moviedreamer_core.storyboard import Storyboard
from moviedreamer_core.spaces import TokenSpace
from moviedreamer_core.training_state import load_state, save_state

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps (Linux)")


def mapped(path) -> bool:
    with open("/proc/self/maps", encoding="utf-8") as f:
        return os.path.realpath(path) in f.read()


def test_a_training_state_read_back_keeps_no_view_of_its_file(tmp_path):
    path = str(tmp_path / "state.resume")
    module = torch.nn.Linear(64, 64)
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.randn(2, 64)).sum().backward()
    optimizer.step()
    save_state(path, metadata_key="k", fingerprint="f", step=1, losses=[0.5], modules={"m": module},
               optimizer=optimizer, generator=torch.Generator())
    again = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(again.parameters())
    assert load_state(path, metadata_key="k", fingerprint="f", max_step=5, modules={"m": again}, optimizer=opt,
                      generator=torch.Generator()) is not None
    assert opt.state_dict()["state"]  # the moments the optimizer kept
    assert not mapped(path)
    save_state(path, metadata_key="k", fingerprint="f", step=2, losses=[0.5, 0.4], modules={"m": again}, optimizer=opt,
               generator=torch.Generator())  # what Windows refused while the file was mapped


def test_encoded_samples_read_back_keep_no_view_of_their_file(tmp_path):
    path = str(tmp_path / "r.safetensors.samples")
    text = torch.randn(3, 8)
    save_samples(path, [RendererSample(torch.randn(4, 8, 8), torch.randn(1, 8), text, torch.randn(8))],
                 fingerprint="f", generator=torch.Generator())
    samples, _, _ = load_samples(path, fingerprint="f")
    assert samples and not mapped(path)


def test_a_kept_latent_and_a_storyboard_read_back_keep_no_view_of_their_files(tmp_path):
    project = MovieProject(str(tmp_path), "mapped")
    project.save_keyframe(0, np.zeros((8, 8, 3), np.uint8), "sig", {}, latent=torch.randn(1, 4, 8, 8))
    latent = project.load_keyframe_latent(0, "sig")
    assert latent is not None and not mapped(project.path(project.latent_file(0)))
    board = Storyboard(tokens=torch.randn(2, 1, 4), token_space=TokenSpace("t", 1, 4), keyframe_shot=(0, 0),
                       shot_ids=("a", "a"), planner_name="p", seed=0, keyframe_seeds=(1, 2), script_hash="h",
                       content_hash="c", null_tokens=torch.zeros(1, 1, 4))
    board.to_safetensors(str(tmp_path / "board.safetensors"))
    again = Storyboard.from_safetensors(str(tmp_path / "board.safetensors"))
    assert torch.equal(again.tokens, board.tokens) and not mapped(tmp_path / "board.safetensors")


def test_atomic_writes_flush_through_a_descriptor_open_for_writing(tmp_path, monkeypatch):
    modes = []
    fsync = os.fsync

    def watching_fsync(fd):
        modes.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watching_fsync)
    atomic_write_bytes(str(tmp_path / "a.json"), b"{}")
    assert modes and os.O_RDONLY not in modes


def test_where_a_replace_is_refused_for_a_file_held_open_it_is_tried_again_then_named(tmp_path, monkeypatch):
    """Windows refuses to replace a file a video player or an antivirus holds open (``PermissionError``): there
    ``atomic_path`` tries again for a few seconds, and in the end says which file and what usually holds it. Elsewhere
    a refusal is a real permission problem and is raised at once."""
    import moviedreamer_core.files as files

    replace, refusals = os.replace, []

    def held_open(src, dst, times):
        if len(refusals) < times:
            refusals.append(dst)
            raise PermissionError(13, "The process cannot access the file because it is being used by another process")
        replace(src, dst)

    monkeypatch.setattr(files, "REPLACE_PATIENCE", 0.3)
    monkeypatch.setattr(os, "replace", lambda s, d: held_open(s, d, 2))
    with pytest.raises(PermissionError):
        atomic_write_bytes(str(tmp_path / "here.json"), b"{}")  # not Windows: at once
    assert len(refusals) == 1 and not (tmp_path / "here.json").exists()
    monkeypatch.setattr(files, "RETRY_REPLACE", True)
    refusals.clear()
    atomic_write_bytes(str(tmp_path / "movie.mp4"), b"frames")
    assert len(refusals) == 2 and (tmp_path / "movie.mp4").read_bytes() == b"frames"
    refusals.clear()
    monkeypatch.setattr(os, "replace", lambda s, d: held_open(s, d, 1000))
    with pytest.raises(PermissionError, match="movie.mp4 cannot be replaced by .tmp_.*: another program holds one of them open"):
        atomic_write_bytes(str(tmp_path / "movie.mp4"), b"other frames")
    assert (tmp_path / "movie.mp4").read_bytes() == b"frames" and not list(tmp_path.glob(".tmp_*"))
