// Each UI workflow as the real front-end draws it (tests/host/test_browser.py checks the geometry it reports).
//
// node layout_check.mjs <server url> <screenshot dir> <UI workflow.json> [<UI workflow.json> ...]
//
// For each workflow: app.loadGraphData(json) (what dropping the file or picking a template does: the front-end
// enlarges every node to at least its computeSize()), two drawn frames, then every node's id, type, title, pos,
// size (the front-end's, after loading), saved size, computeSize(), whether its type is registered, and every
// group's bounding, font size and title height; a screenshot of the whole workflow fitted to the window
// (<screenshot dir>/<workflow name>.png). Then what a run adds (js/moviedreamer.js: a summary line under the nodes
// that report one, the storyboard panel on the planner and the renderer, the renderer's identity report lines),
// simulated through the pack's own front-end code (thumbnails of <server input>/moviedreamer_layout_card.png, then a
// Cancel): every node's size after it (afterRun), the panels' card rectangles (cards) and status lines (status), and a
// second screenshot (<workflow name>_after_run.png).
// Prints one JSON line {"workflows": {<path as given>: {nodes, groups}}, pageErrors, consoleErrors}; exits 1 on a
// timeout or another error of this script.
import fs from "node:fs";
import path from "node:path";
import { quietSettings, runOnComfyUI } from "./comfy_page.mjs";

const [url, outDir, ...files] = process.argv.slice(2);
const report = { workflows: {}, pageErrors: [], consoleErrors: [] };
const PANEL_NODES = ["ARKeyframePlanner", "IdentityDiffusionRender"];  // js/moviedreamer.js
const frame = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

// the whole graph in the window, below the top menu and the workflow tabs, right of the side bar
async function fitToWindow(page) {
  await page.evaluate(() => {
    const { app } = window;
    const rects = [...app.graph.nodes.map((n) => n.boundingRect), ...app.graph.groups.map((g) => g._bounding)];
    const x0 = Math.min(...rects.map((r) => r[0])), y0 = Math.min(...rects.map((r) => r[1]));
    const x1 = Math.max(...rects.map((r) => r[0] + r[2])), y1 = Math.max(...rects.map((r) => r[1] + r[3]));
    const canvas = app.canvas.canvas;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    const [left, top, right, bottom] = [70, 90, 20, 20];
    const scale = Math.min((w - left - right) / (x1 - x0), (h - top - bottom) / (y1 - y0), 1);
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [left / scale - x0, top / scale - y0];
    app.graph.setDirtyCanvas(true, true);
  });
  await frame(page);
}

await quietSettings(url, { "Comfy.Minimap.Visible": false });  // no template browser, nothing over the graph
await runOnComfyUI(url, { width: 1920, height: 1080 }, report, async (page) => {
  for (const file of files) {
    const workflow = JSON.parse(fs.readFileSync(file, "utf8"));
    const name = path.basename(file, ".json");
    await page.evaluate(async (wf, name) => { await window.app.loadGraphData(wf, true, true, name); }, workflow, name);
    await page.waitForFunction((n) => window.app.graph.nodes.length === n, { timeout: 30000 }, workflow.nodes.length);
    await frame(page);
    await new Promise((r) => setTimeout(r, 300));  // extensions' onConfigure timers (the script helper)
    await frame(page);
    const saved = Object.fromEntries(workflow.nodes.map((n) => [String(n.id), n.size]));
    const drawn = await page.evaluate((saved) => {
      const { app, LiteGraph } = window;
      const nodes = app.graph.nodes.map((n) => ({
        id: n.id, type: n.type, title: n.title, pos: [...n.pos], size: [...n.size], saved: saved[String(n.id)],
        computed: [...n.computeSize()], registered: !!LiteGraph.registered_node_types[n.type],
        flags: { collapsed: !!n.flags?.collapsed }, titleHeight: LiteGraph.NODE_TITLE_HEIGHT,
      }));
      const groups = app.graph.groups.map((g) => ({ title: g.title, bounding: [...g._bounding], font_size: g.font_size,
        titleHeight: g.titleHeight }));
      return { nodes, groups };
    }, saved);
    await fitToWindow(page);
    await page.screenshot({ path: path.join(outDir, `${name}.png`) });

    const afterRun = await page.evaluate(async (panelNodes) => {
      const { api } = await import("/scripts/api.js");
      const { app } = window;
      for (const n of app.graph.nodes) n.onExecuted?.({ text: ["3 shots, 6 keyframes, 2 characters (a run's summary)"] });
      const keyframes = Array.from({ length: 6 }, (_, i) => ({ index: i, shot: `s${i + 1}`, action: "Ava climbs the path.",
        characters: ["Ava"] }));
      for (const n of app.graph.nodes) {
        if (panelNodes.includes(n.type)) {
          api.dispatchCustomEvent("moviedreamer.storyboard", { node: String(n.id), display_node: String(n.id), keyframes });
          // the renderer's identity report lines under two cards, one of them flagged
          // and four finished keyframes with their thumbnails (a square picture in the server's input folder, as the
          // toy cinema's keyframes are), two of them with an identity report line
          for (const k of n.type === "IdentityDiffusionRender" ? keyframes.slice(0, 4) : []) {
            const identity = k.index > 1 ? null : { ok: k.index === 0, flags: k.index === 0 ? [] : ["Ava missing (no face)"],
              characters: [{ name: "Ava", similarity: k.index === 0 ? 0.97 : null, flags: k.index === 0 ? [] : ["missing"] }] };
            api.dispatchCustomEvent("moviedreamer.keyframe", { node: String(n.id), display_node: String(n.id), index: k.index,
              total: keyframes.length, shot: k.shot, action: k.action, identity,
              image: { filename: "moviedreamer_layout_card.png", subfolder: "", type: "input" } });
          }
        }
      }
      await Promise.all([...document.querySelectorAll(".moviedreamer-card img")].map((img) => img.complete ? null
        : new Promise((r) => { img.onload = r; img.onerror = r; })));
      // and the run cancelled before the last two keyframes: the renderer's panel says so
      api.dispatchCustomEvent("execution_interrupted", { prompt_id: "simulated", node_id: "0", node_type: "", executed: [] });
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const status = Object.fromEntries(app.graph.nodes.filter((n) => n.moviedreamerPanel).map((n) =>
        [String(n.id), n.moviedreamerPanel.element.querySelector(".md-status")?.textContent ?? null]));
      // a run whose renderer finished (a distributed master's share, say) and a later node failed: no status line
      api.dispatchCustomEvent("execution_start", { prompt_id: "simulated2" });
      for (const n of app.graph.nodes.filter((n) => n.type === "IdentityDiffusionRender")) {
        api.dispatchCustomEvent("executing", { node: String(n.id), display_node: String(n.id), prompt_id: "simulated2" });
        api.dispatchCustomEvent("executed", { node: String(n.id), display_node: String(n.id), output: {}, prompt_id: "simulated2" });
      }
      api.dispatchCustomEvent("execution_error", { prompt_id: "simulated2", node_id: "0", node_type: "ShotAnimate",
        exception_message: "simulated", exception_type: "ValueError", traceback: [], executed: [] });
      const statusAfterFinished = Object.fromEntries(app.graph.nodes.filter((n) => n.moviedreamerPanel).map((n) =>
        [String(n.id), n.moviedreamerPanel.element.querySelector(".md-status")?.textContent ?? null]));
      // each card as drawn, with what it shows (thumbnail, label, identity line): the box of the card and the box of
      // its contents together, in page pixels
      const box = (r) => [r.left, r.top, r.right, r.bottom];
      const cards = Object.fromEntries(app.graph.nodes.filter((n) => n.moviedreamerPanel).map((n) =>
        [String(n.id), [...n.moviedreamerPanel.element.querySelectorAll(".moviedreamer-card")].map((c) => {
          const parts = [c, ...c.children].map((e) => box(e.getBoundingClientRect()));
          return [Math.min(...parts.map((p) => p[0])), Math.min(...parts.map((p) => p[1])),
            Math.max(...parts.map((p) => p[2])), Math.max(...parts.map((p) => p[3]))];
        })]));
      return { sizes: Object.fromEntries(app.graph.nodes.map((n) => [String(n.id), [...n.size]])), status, cards,
        statusAfterFinished };
    }, PANEL_NODES);
    for (const n of drawn.nodes) {
      n.afterRun = afterRun.sizes[String(n.id)];
      n.status = afterRun.status[String(n.id)] ?? null;
      n.cards = afterRun.cards[String(n.id)] ?? null;
      n.statusAfterFinished = afterRun.statusAfterFinished[String(n.id)] ?? null;
    }
    await fitToWindow(page);
    await page.screenshot({ path: path.join(outDir, `${name}_after_run.png`) });
    report.workflows[file] = drawn;
  }
});
