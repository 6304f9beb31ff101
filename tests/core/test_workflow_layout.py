"""The UI workflows are laid out so that a user sees every node and every group title (the geometry and the
rules: tests/workflow_layout.py). The same rules check the rectangles read back from the real front-end in
tests/host/test_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..workflow_layout import (MARGIN, NODE_TITLE_HEIGHT, ROOT, backward_links, layout_problems, size_problems,
                               ui_workflows)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_ui_workflows_are_found():
    names = {relative(p) for p in ui_workflows()}
    assert "workflows/moviedreamer_movie.json" in names and "workflows/moviedreamer_toycinema.json" in names, names
    assert len(names) >= 5, names


@pytest.mark.parametrize("path", ui_workflows(), ids=relative)
def test_no_node_overlaps_another_or_a_group_title(path):
    problems = layout_problems(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, f"{relative(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", ui_workflows(), ids=relative)
def test_no_node_is_saved_smaller_than_the_front_end_draws_it(path):
    problems = size_problems(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, f"{relative(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", ui_workflows(), ids=relative)
def test_links_run_left_to_right(path):
    problems = backward_links(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, f"{relative(path)}:\n  " + "\n  ".join(problems)


def test_the_checker_sees_a_title_bar_overlap_and_a_covered_group_title():
    """A node placed just under another (its title bar over the other's last row) is an overlap; a node at the
    top of its group covers the group's title."""
    a = {"id": 1, "type": "A", "pos": [0, 100], "size": [200, 100]}
    b = {"id": 2, "type": "B", "pos": [0, 215], "size": [200, 100]}  # body 15 below a's body: title bar over a
    assert any("overlap" in p for p in layout_problems({"nodes": [a, b]}))
    b["pos"] = [0, 100 + 100 + NODE_TITLE_HEIGHT + MARGIN]
    assert layout_problems({"nodes": [a, b]}) == []
    group = {"title": "G", "bounding": [-20, 40, 260, 400], "font_size": 24}
    problems = layout_problems({"nodes": [a, b], "groups": [group]})
    assert any("covers the title of group 'G'" in p for p in problems), problems
    group["bounding"] = [-20, 100 - NODE_TITLE_HEIGHT - MARGIN - 24 * 1.4 - 1, 240, 400]
    assert layout_problems({"nodes": [a, b], "groups": [group]}) == []
    top, bottom = b["pos"][1] - NODE_TITLE_HEIGHT, b["pos"][1] + b["size"][1]
    group["bounding"][3] = (top + bottom) / 2 + 20 - group["bounding"][1]  # b's centre inside, its bottom outside
    assert any("sticks out" in p for p in layout_problems({"nodes": [a, b], "groups": [group]}))
