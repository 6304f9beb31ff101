"""Where a UI workflow's nodes and groups are drawn, and what in that layout hides something from a user.

Geometry as the host's front-end (comfyui_frontend_package 1.27, its LiteGraph) draws it:

- a node's ``pos`` is the top-left corner of its body; its title bar (``LiteGraph.NODE_TITLE_HEIGHT`` = 30) sits
  above it, so the node covers ``[x, y - 30, w, h + 30]`` (``LGraphNode.measure``);
- a group's ``bounding`` is ``[x, y, w, h]``; its title strip is the top ``font_size * 1.4`` of it
  (``LGraphGroup.titleHeight``, font size 24 by default);
- a node belongs to a group when the centre of its rectangle lies inside the group
  (``LGraphGroup.recomputeInsideNodes``): such a node must then lie wholly inside the group, below its title.

A node's height is the saved one, or the height the front-end will give it if that is more (``min_height``, a
lower bound from its slots and widgets, plus what js/moviedreamer.js adds during a run); a separate test asks that
the saved size already be enough. tests/host/test_browser.py loads every UI workflow in the real front-end,
simulates what a run adds, and checks the rectangles read back from it with the same rules (the workflows with
ComfyUI-Distributed's nodes in the front-end of the distributed tests' master: tests/distributed/test_workflows.py).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]  # the pack folder
NODE_TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT
DEFAULT_GROUP_FONT = 24  # LiteGraph.DEFAULT_GROUP_FONT
MARGIN = 10  # free space kept between two nodes, and between a node and its group's edges and title strip
NODE_SLOT_HEIGHT, NODE_WIDGET_HEIGHT = 20, 20  # LiteGraph's; a widget row takes its height + 4
# What a run adds to a node in js/moviedreamer.js: a summary box (a DOM widget of one widget row at least) under these nodes, and
# the storyboard panel on the planner and the renderer (a DOM widget of minimum height 120, plus 120 more).
SUMMARY_NODES = {"ScriptEncode", "MovieDreamerScriptInfo", "ARKeyframePlanner", "MovieDreamerStoryboardInfo",
                 "IdentityDiffusionRender", "ShotAnimate", "MovieDreamerGather"}
PANEL_NODES = {"ARKeyframePlanner", "IdentityDiffusionRender"}


#: The node types of ComfyUI-Distributed 1.4.4 (its nodes/__init__.py and upscale/). A workflow with one of them
#: loads only where ComfyUI-Distributed is installed: the host tests' single server does not have it, the distributed
#: tests' cluster does (tests/distributed/test_workflows.py checks such workflows there).
DISTRIBUTED_NODE_TYPES = frozenset({"DistributedCollector", "DistributedSeed", "DistributedModelName", "DistributedValue",
                                    "ImageBatchDivider", "AudioBatchDivider", "DistributedEmptyImage",
                                    "UltimateSDUpscaleDistributed"})


def node_types(workflow: dict) -> set[str]:
    """The node types of a UI-format workflow (``nodes``) or an API-format prompt (``class_type``)."""
    if isinstance(workflow.get("nodes"), list):
        return {n["type"] for n in workflow["nodes"]}
    return {v["class_type"] for v in workflow.values() if isinstance(v, dict) and "class_type" in v}


def uses_distributed(workflow: dict) -> bool:
    """The workflow needs ComfyUI-Distributed's nodes (``DISTRIBUTED_NODE_TYPES``)."""
    return bool(node_types(workflow) & DISTRIBUTED_NODE_TYPES)


def ui_workflows(distributed: Optional[bool] = None) -> list[Path]:
    """Every UI-format workflow the pack ships or tests with (API-format files have no ``nodes`` list); with
    ``distributed`` True or False, only those that use ComfyUI-Distributed's nodes, or only the others."""
    files = sorted((ROOT / "workflows").rglob("*.json")) + sorted((ROOT / "tests" / "workflows").rglob("*.json"))
    found = []
    for f in files:
        workflow = json.loads(f.read_text(encoding="utf-8"))
        if isinstance(workflow.get("nodes"), list) and (distributed is None or uses_distributed(workflow) == distributed):
            found.append(f)
    return found


def node_name(node: dict) -> str:
    return f"#{node['id']} {node.get('title') or node['type']}"


def node_rect(node: dict, grow: bool = True) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of the node as drawn, title bar included; with ``grow``, at least as tall as
    the front-end makes it (``min_height``), whatever the saved size says."""
    x, y = node["pos"][0], node["pos"][1]
    w, h = node["size"][0], max(node["size"][1], min_height(node)) if grow else node["size"][1]
    if (node.get("flags") or {}).get("collapsed"):
        raise AssertionError(f"{node_name(node)} is collapsed: its drawn width depends on the font, lay it out open")
    return (x, y - NODE_TITLE_HEIGHT, x + w, y + h)


def group_rect(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return (x, y, x + w, y + h)


def title_strip(group: dict) -> tuple[float, float, float, float]:
    x, y, w, _ = group["bounding"]
    return (x, y, x + w, y + (group.get("font_size") or DEFAULT_GROUP_FONT) * 1.4)


def intersects(a, b, margin: float = 0.0) -> bool:
    """True when ``a`` and ``b`` overlap or come closer than ``margin`` to each other."""
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def layout_problems(workflow: dict, grow: bool = True) -> list[str]:
    """Every layout fault of one UI workflow, in words (``grow``: see ``node_rect``; without it, the sizes are
    taken as they are, e.g. the ones read back from the real front-end)."""
    problems = []
    nodes = workflow["nodes"]
    rects = {n["id"]: node_rect(n, grow) for n in nodes}
    for a, b in combinations(nodes, 2):
        if intersects(rects[a["id"]], rects[b["id"]], MARGIN):
            problems.append(f"{node_name(a)} and {node_name(b)} overlap (or are less than {MARGIN} apart): "
                            f"{rects[a['id']]} / {rects[b['id']]}")
    groups = workflow.get("groups") or []
    for a, b in combinations(groups, 2):
        if intersects(group_rect(a), group_rect(b)):
            problems.append(f"groups {a['title']!r} and {b['title']!r} overlap")
    for group in groups:
        g, strip = group_rect(group), title_strip(group)
        for n in nodes:
            r = rects[n["id"]]
            if intersects(r, strip, MARGIN):
                problems.append(f"{node_name(n)} covers the title of group {group['title']!r}")
            centre = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
            if g[0] <= centre[0] <= g[2] and g[1] <= centre[1] <= g[3]:  # the front-end counts it in the group
                inside = (r[0] >= g[0] + MARGIN and r[2] <= g[2] - MARGIN and r[1] >= strip[3] + MARGIN
                          and r[3] <= g[3] - MARGIN)
                if not inside:
                    problems.append(f"{node_name(n)} belongs to group {group['title']!r} but sticks out of it "
                                    f"(node {r}, group {g})")
    return problems


def min_height(node: dict) -> float:
    """A lower bound of the height the front-end gives the node once it has run (``LGraphNode.computeSize``: a row
    per input or output slot, a row per widget plus 4, 8 + 6 of margins; multi-line text boxes and image previews
    take more), plus what js/moviedreamer.js adds during a run. A saved height below it is enlarged by the front-end,
    over whatever lies beneath (tests/host/test_browser.py measures the exact heights in the real front-end)."""
    slots = max(len([i for i in node.get("inputs") or [] if "widget" not in i]), len(node.get("outputs") or []), 1)
    values = node.get("widgets_values")
    widgets = len(values) if isinstance(values, list) else 0
    height = slots * NODE_SLOT_HEIGHT + (widgets * (NODE_WIDGET_HEIGHT + 4) + 8 if widgets else 0) + 6
    if node["type"] in SUMMARY_NODES:
        height += NODE_WIDGET_HEIGHT + 4
    if node["type"] in PANEL_NODES:
        height += 120 + 4 + 120
    return height


def size_problems(workflow: dict) -> list[str]:
    return [f"{node_name(n)} is saved {n['size'][1]} high: the front-end makes it at least {min_height(n)} "
            f"(its rows and widgets, and what a run adds)" for n in workflow["nodes"] if n["size"][1] < min_height(n)]


def backward_links(workflow: dict) -> list[str]:
    """Links whose target node starts left of their source node (the graph should read left to right)."""
    by_id = {n["id"]: n for n in workflow["nodes"]}
    out = []
    for link in workflow.get("links") or []:
        _, src, _, dst, _, kind = link[:6]
        s, d = by_id[src], by_id[dst]
        if d["pos"][0] < s["pos"][0]:
            out.append(f"{node_name(s)} -> {node_name(d)} ({kind}) runs right to left")
    return out
