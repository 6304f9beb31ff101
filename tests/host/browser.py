"""The headless browser of the front-end tests (Debian ``chromium-headless-shell``, npm ``puppeteer-core@24``):
finding it, and reading back how the real front-end draws UI workflows (``tests/browser/layout_check.mjs``).

Used by tests/host/test_browser.py (the single server, every UI workflow without ComfyUI-Distributed's nodes) and
tests/distributed/test_workflows.py (the cluster's master, the workflows with them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..workflow_layout import NODE_TITLE_HEIGHT, layout_problems, title_strip
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


def run_browser_script(server, script: str, *args: str) -> dict:
    """Run ``tests/browser/<script>`` against ``server`` (a ``ServerHost``) and return the JSON report it prints last;
    fails when it printed none, exited with an error, or reported one."""
    chrome, node = browser_tools()
    proc = subprocess.run([node, str(BROWSER_DIR / script), server.url, *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "CHROME_PATH": chrome}, cwd=str(BROWSER_DIR))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}\n{server.log_tail()}"
    report = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in report, (report.get("error"), server.log_tail())
    return report


def drawn_layout_problems(server, files: list[Path], tmp_path: Path) -> list[str]:
    """Each UI workflow of ``files`` loaded in the front-end of ``server`` (a ``ServerHost``), then what a run adds
    to it simulated through the pack's front-end code (summary lines, storyboard panels): every problem, in words,
    of the rectangles read back from the page (the rules of tests/workflow_layout.py), every node the front-end had
    to enlarge or move, every node type it does not know. Screenshots go to ``tmp_path`` (``<workflow>.png`` and
    ``<workflow>_after_run.png``); ``MOVIEDREAMER_SCREENSHOTS=<folder>`` keeps a copy. Fails on errors thrown by
    the pack's front-end code."""
    from PIL import Image

    # the simulated run's thumbnails: square, as the toy cinema's keyframes
    Image.new("RGB", (256, 256), (90, 140, 200)).save(server.dirs["input"] / "moviedreamer_layout_card.png")
    report = run_browser_script(server, "layout_check.mjs", str(tmp_path), *map(str, files))
    ours = [e for e in report["pageErrors"] + report["consoleErrors"] if f"/extensions/{server.pack_name}/" in e]
    assert not ours, ours
    problems = []
    for path in files:
        name = str(path.relative_to(PACK_DIR))
        drawn = report["workflows"][str(path)]
        saved = {n["id"]: n for n in json.loads(path.read_text(encoding="utf-8"))["nodes"]}
        problems += [f"{name}: the front-end does not know the node type {n['type']} (#{n['id']})"
                     for n in drawn["nodes"] if not n["registered"]]
        problems += [f"{name}: #{n['id']} {n['type']} has a title bar of {n['titleHeight']} px, not "
                     f"{NODE_TITLE_HEIGHT}" for n in drawn["nodes"] if n["titleHeight"] != NODE_TITLE_HEIGHT]
        for group in drawn["groups"]:  # the title strip the checker assumes is the one the front-end draws
            assumed = title_strip(group)[3] - title_strip(group)[1]
            if abs(group["titleHeight"] - assumed) >= 1e-3:
                problems.append(f"{name}: group {group['title']!r} has a title strip of {group['titleHeight']} px, "
                                f"the checker assumes {assumed}")
        for state in ("size", "afterRun"):
            nodes = [{**n, "size": n[state]} for n in drawn["nodes"]]
            problems += [f"{name} ({state}): {p}" for p in
                         layout_problems({"nodes": nodes, "groups": drawn["groups"]}, grow=False)]
            problems += [f"{name} ({state}): the front-end made #{n['id']} {n['type']} {n[state]} (saved "
                         f"{saved[n['id']]['size']})" for n in drawn["nodes"]
                         if any(d > s + 0.5 for d, s in zip(n[state], saved[n["id"]]["size"]))]
        problems += [f"{name}: the front-end moved #{n['id']} {n['type']} to {n['pos']}" for n in drawn["nodes"]
                     if any(abs(d - s) > 0.5 for d, s in zip(n["pos"], saved[n["id"]]["pos"]))]
        # no card over another: the panel's grid rows were shorter than its cards, so thumbnails covered each other's
        # labels and identity lines at the workflows' saved sizes (an audit)
        for n in drawn["nodes"]:
            cards = n.get("cards") or []
            if any(min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5
                   for i, a in enumerate(cards) for b in cards[i + 1:]):
                problems.append(f"{name}: cards of the storyboard panel of #{n['id']} {n['type']} overlap: {cards}")
        # a cancelled run: the renderer's panel says what is kept (it looked like a render still under way)
        expected = "Cancelled after 4 of 6 keyframes: the finished ones are kept in the project folder; queue again to make the rest."
        problems += [f"{name}: after a cancel the panel of #{n['id']} {n['type']} says {n['status']!r}" for n in drawn["nodes"]
                     if n["type"] == "IdentityDiffusionRender" and n["status"] != expected]
        problems += [f"{name}: a renderer that finished says {n['statusAfterFinished']!r} after a later node's error"
                     for n in drawn["nodes"] if n["type"] == "IdentityDiffusionRender" and n["statusAfterFinished"]]
    shots = os.environ.get("MOVIEDREAMER_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, Path(shots) / png.name)
    for path in files:
        assert (tmp_path / f"{path.stem}.png").stat().st_size > 10_000, f"{path.stem}.png: an empty screenshot?"
    return problems


def queued_prompts(server, files: list[Path]) -> dict[Path, dict]:
    """The API-format prompt the front-end of ``server`` queues for each UI workflow of ``files``
    (``tests/browser/prompt_check.mjs``: ``app.graphToPrompt()`` after loading it), without the front-end's ``_meta``
    titles."""
    report = run_browser_script(server, "prompt_check.mjs", *map(str, files))
    out = {}
    for path in files:
        prompt = report["prompts"][str(path)]
        out[path] = {k: {n: v for n, v in node.items() if n != "_meta"} for k, node in prompt.items()}
    return out
