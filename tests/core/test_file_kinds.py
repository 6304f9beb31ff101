"""``file_kinds``: what a file of ``models/moviedreamer`` is, from its header (each loader lists its own kind)."""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

from moviedreamer_core.file_kinds import PLANNER, RENDERER, file_kind, listed_for
from moviedreamer_core.planner import save_planner

from .test_planner import random_model


def test_a_files_kind_is_read_from_its_header_and_unknown_files_are_listed_everywhere(tmp_path):
    planner = tmp_path / "p.safetensors"
    save_planner(random_model(), str(planner))
    renderer, other, broken = tmp_path / "r.safetensors", tmp_path / "other.safetensors", tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(1)}, str(renderer), metadata={"moviedreamer_renderer": "{}"})
    save_file({"w": torch.zeros(1)}, str(other))
    broken.write_bytes(b"\xff" * 16)
    assert [file_kind(str(p)) for p in (planner, renderer, other, broken, tmp_path / "missing")] == \
        [PLANNER, RENDERER, None, None, None]
    assert listed_for(PLANNER, PLANNER) and listed_for(PLANNER, None) and not listed_for(PLANNER, RENDERER)
    # a file replaced under the same name is read again (kept per size and modification time)
    save_file({"w": torch.zeros(2)}, str(renderer), metadata={"moviedreamer_planner": "{}"})
    os.utime(renderer, ns=(1, 1))
    assert file_kind(str(renderer)) == PLANNER
