"""The pack's CPU thread rule (moviedreamer_core/threads.py): --threads, then MOVIEDREAMER_THREADS, then the
caller's default; a block of work gets its count and the previous one comes back."""

from __future__ import annotations

import pytest
import torch

from moviedreamer_core.threads import ENV, SMALL_MODEL_THREADS, configured_threads, torch_threads


def test_the_count_comes_from_the_option_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert configured_threads(None) is None and configured_threads(None, SMALL_MODEL_THREADS) == 1
    monkeypatch.setenv(ENV, "3")
    assert configured_threads(None, 1) == 3 and configured_threads(2, 1) == 2
    for bad in ("0", "two", "-1", "100000"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=ENV):
            configured_threads(None)
    with pytest.raises(ValueError, match="--threads"):
        configured_threads(0)
    with pytest.raises(ValueError, match="--threads must be from 1 to 1024, got 100000"):
        configured_threads(100000)  # torch would start them all: the process crashed


def test_a_block_runs_with_its_count_and_the_previous_one_comes_back():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("the work failed")
    assert torch.get_num_threads() == before
