"""A keyframe_set read after another process made its keyframes again (two servers on one output folder running the
same project with different scripts: the lock is per node, so the other's IdentityDiffusionRender can run between
this prompt's render and its ShotAnimate) is refused, not turned into this prompt's movie (an audit)."""

from __future__ import annotations

import numpy as np
import pytest

from moviedreamer_core.project import KeyframeSet, MovieProject


def _picture(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_a_keyframe_made_again_by_another_process_is_refused(tmp_path):
    project = MovieProject(str(tmp_path), "race")
    for k in range(2):
        project.save_keyframe(k, _picture(10 + k), f"sig-{k}", {})
    keyframes = KeyframeSet(project.root, 2, 8, 8, sha256=KeyframeSet.recorded_sha256(project, 2))
    # the other server's render of another script: keyframe 1 made again, recorded in its own manifest
    other = MovieProject(str(tmp_path), "race")
    other.save_keyframe(1, _picture(200), "sig-other", {})
    assert (keyframes.load(0) == 10).all()
    with pytest.raises(RuntimeError, match="keyframe 1 .* changed on disk"):
        keyframes.load(1)


def test_a_set_without_recorded_hashes_reads_as_before(tmp_path):
    project = MovieProject(str(tmp_path), "plain")
    project.save_keyframe(0, _picture(7), "sig", {})
    assert (KeyframeSet(project.root, 1, 8, 8).load(0) == 7).all()
    # an entry of an earlier version without a SHA-256 is not checked
    assert KeyframeSet.recorded_sha256(project, 2) == (project.keyframe_entry(0)["sha256"], "")
