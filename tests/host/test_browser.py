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

from ..workflow_layout import NODE_TITLE_HEIGHT, layout_problems, title_strip, ui_workflows
from .harness import PACK_DIR

BROWSER_DIR = PACK_DIR / "tests" / "browser"


def browser_tools() -> tuple[str, str]:
    """Chromium and Node.js, or a skip naming what is missing; under CI (like the host itself) a failure, so a CI
    run cannot pass without the browser test."""
    chrome = os.environ.get("CHROME_PATH") or shutil.which("chromium-headless-shell") or ""
    node = shutil.which("node") or ""
    missing = None
    if not chrome:
        missing = "no chromium-headless-shell (apt-get install chromium-headless-shell, or set CHROME_PATH)"
    elif not node:
        missing = "no Node.js for the browser test"
    elif not (BROWSER_DIR / "node_modules" / "puppeteer-core").is_dir():
        missing = "puppeteer-core not installed (npm ci --prefix tests/browser)"
    if missing:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI runs the browser test: {missing} (README, Tests: host set-up)")
        pytest.skip(missing)
    return chrome, node


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
    # errors thrown by this pack's front-end code (the host's own bundle logs unrelated ones in a headless page)
    ours = [e for e in report["pageErrors"] + report["consoleErrors"] if f"/extensions/{server.pack_name}/" in e]
    assert not ours, ours
    for shot in ("movie_workflow.png", "storyboard_panel.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
    deadline = time.time() + 120  # ShotAnimate runs after the last keyframe
    while not movie.is_file() and time.time() < deadline:
        time.sleep(0.5)
    assert movie.is_file(), server.log_tail()
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
    screenshot of each workflow as loaded and after the simulated run."""
    chrome, node = browser_tools()
    files = ui_workflows()
    proc = subprocess.run([node, str(BROWSER_DIR / "layout_check.mjs"), server.url, str(tmp_path), *map(str, files)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "CHROME_PATH": chrome},
                          cwd=str(BROWSER_DIR))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}\n{server.log_tail()}"
    report = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in report, (report.get("error"), server.log_tail())
    ours = [e for e in report["pageErrors"] + report["consoleErrors"] if f"/extensions/{server.pack_name}/" in e]
    assert not ours, ours
    problems = []
    for path in files:
        name = str(path.relative_to(PACK_DIR))
        drawn = report["workflows"][str(path)]
        saved = {n["id"]: n for n in json.loads(path.read_text(encoding="utf-8"))["nodes"]}
        assert [n["type"] for n in drawn["nodes"] if not n["registered"]] == [], name
        assert {n["titleHeight"] for n in drawn["nodes"]} <= {NODE_TITLE_HEIGHT}, name
        for group in drawn["groups"]:  # the title strip the checker assumes is the one the front-end draws
            assert abs(group["titleHeight"] - (title_strip(group)[3] - title_strip(group)[1])) < 1e-3, (name, group)
        for state in ("size", "afterRun"):
            nodes = [{**n, "size": n[state]} for n in drawn["nodes"]]
            problems += [f"{name} ({state}): {p}" for p in
                         layout_problems({"nodes": nodes, "groups": drawn["groups"]}, grow=False)]
            problems += [f"{name} ({state}): the front-end made #{n['id']} {n['type']} {n[state]} (saved "
                         f"{saved[n['id']]['size']})" for n in drawn["nodes"]
                         if any(d > s + 0.5 for d, s in zip(n[state], saved[n["id"]]["size"]))]
        problems += [f"{name}: the front-end moved #{n['id']} {n['type']} to {n['pos']}" for n in drawn["nodes"]
                     if any(abs(d - s) > 0.5 for d, s in zip(n["pos"], saved[n["id"]]["pos"]))]
    shots = os.environ.get("MOVIEDREAMER_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, Path(shots) / png.name)
    assert not problems, "\n".join(problems)
    for path in files:
        assert (tmp_path / f"{path.stem}.png").stat().st_size > 10_000
