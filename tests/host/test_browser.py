"""The front-end in a real headless browser (Debian ``chromium-headless-shell``, npm ``puppeteer-core@24``):
the movie workflow dragged onto the canvas, no missing node types, the script helper answering, and the
storyboard panel filling while the tiny workflow runs; every UI workflow drawn with nothing hidden. Skipped, with the reason, where the browser or the npm
packages are not installed (README, "Tests")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..workflow_layout import ui_workflows
from .browser import BROWSER_DIR, browser_tools, drawn_layout_problems
from .harness import PACK_DIR

@pytest.mark.slow
def test_workflow_loads_and_the_storyboard_panel_fills_in_a_headless_browser(server, photos, model_dirs, tmp_path):
    chrome, node = browser_tools()
    md, _ = model_dirs
    shutil.copy(md / "tiny_renderer.safetensors", server.workdir / "models" / "moviedreamer" / "tiny_renderer.safetensors")
    for name in ("astronaut.png", "hopper.png"):
        shutil.copy(photos / name, server.dirs["input"] / name)
    for name in ("ava_reference.png", "bo_reference.png", "cy_reference.png"):  # the movie workflow's references
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(server.dirs["input"] / name)
    movie = server.dirs["output"] / "moviedreamer" / "tiny_movie" / "tiny_movie.mp4"
    movie.unlink(missing_ok=True)  # another test may have made it: this run must make it again
    proc = subprocess.run([node, str(BROWSER_DIR / "ui_check.mjs"), server.url, str(PACK_DIR / "workflows" / "moviedreamer_movie.json"),
                           str(PACK_DIR / "tests" / "workflows" / "moviedreamer_movie_tiny.json"), str(tmp_path), "3"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CHROME_PATH": chrome}, cwd=str(BROWSER_DIR))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}\n{server.log_tail()}"
    report = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in report, (report, server.log_tail())
    assert report["extension"] and report["missing"] == []
    assert {"ScriptEncode", "ARKeyframePlanner", "IdentityDiffusionRender", "ShotAnimate"} <= set(report["nodes"])
    assert report["scriptCheck"]["ok"] and report["scriptCheck"]["characters"] == ["Ava", "Bo", "Cy"]
    assert [c["label"] for c in report["panel"]] == ["s1 · Ava climbs the path towards the lighthouse.",
                                                     "s2 · Ava lights the lamp.", "s2 · Ava looks out over the sea."]
    assert all(c["image"] == 64 for c in report["panel"]), report["panel"]
    assert all(c["identity"] in ("ok", "flagged") and c["identityText"] for c in report["panel"]), report["panel"]
    rects = report["cardRects"]
    overlapping = [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]
                   if min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5]
    assert len(rects) == 3 and not overlapping, rects
    # the renderer's summary whole (its identity report is its second line), read-only
    render = report["summaries"]["IdentityDiffusionRender"]
    assert render and render["text"] and "\n" in render["text"] and "identity report" in render["text"], report["summaries"]
    assert not render["editable"], render
    assert report["afterReload"] == [" · ", "r1 · after the reload 1", "r2 · after the reload 2"], report["afterReload"]
    # errors thrown by this pack's front-end code (the host's own bundle logs unrelated ones in a headless page)
    ours = [e for e in report["pageErrors"] + report["consoleErrors"] if f"/extensions/{server.pack_name}/" in e]
    assert not ours, ours
    for shot in ("movie_workflow.png", "storyboard_panel.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
    deadline = time.time() + 120  # ShotAnimate runs after the last keyframe
    while not movie.is_file() and time.time() < deadline:
        time.sleep(0.5)
    assert movie.is_file(), server.log_tail()
    # each card shows its keyframe's identity report as the manifest holds it: Ava (the only character, references an
    # EmptyImage) found or flagged, with her similarity or the flags
    entries = json.loads((movie.parent / "manifest.json").read_text(encoding="utf-8"))["keyframes"]
    for k, card in enumerate(report["panel"]):
        saved = entries[str(k)]["identity"]
        assert card["identity"] == ("ok" if saved["ok"] else "flagged"), (card, saved)
        ava = saved["characters"][0]
        assert ava["name"] == "Ava" and "Ava" in card["identityTitle"], card
        if saved["ok"]:
            assert card["identityText"] == f"✓ Ava {ava['similarity']:.2f}", card
        else:
            assert card["identityText"] == "⚠ " + "; ".join(saved["flags"]), card
    shots = Path(os.environ.get("MOVIEDREAMER_SCREENSHOTS", "")) if os.environ.get("MOVIEDREAMER_SCREENSHOTS") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
        for shot in ("movie_workflow.png", "storyboard_panel.png"):
            shutil.copy(tmp_path / shot, shots / shot)


def test_every_ui_workflow_as_the_front_end_draws_it_hides_nothing(server, tmp_path):
    """Each UI workflow (workflows/ and tests/workflows/) loaded in the real front-end, then what a run adds to it
    simulated through the pack's front-end code (summary lines, storyboard panels): read back from the page, no node
    overlaps another or a group's title and every grouped node lies inside its group (the rules of
    tests/workflow_layout.py), and the front-end never had to enlarge or move a node, so the saved rectangles that
    tests/core/test_workflow_layout.py checks are the drawn ones. ``MOVIEDREAMER_SCREENSHOTS=<folder>`` keeps a
    screenshot of each workflow as loaded and after the simulated run. The workflows with ComfyUI-Distributed's nodes
    are drawn by the front-end of a server that has them: tests/distributed/test_workflows.py."""
    files = ui_workflows(distributed=False)
    assert files and len(files) + len(ui_workflows(distributed=True)) == len(ui_workflows())
    problems = drawn_layout_problems(server, files, tmp_path)
    assert not problems, "\n".join(problems)
