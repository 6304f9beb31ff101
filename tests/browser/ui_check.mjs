// The MovieDreamer front-end in a real headless browser against a running ComfyUI (tests/host/test_browser.py).
//
// node ui_check.mjs <server url> <UI workflow.json> <workflow to queue (UI or API)> <screenshot dir> <keyframes expected>
//
// 1. Open the UI; the pack's extension must load.
// 2. Drag the UI workflow onto the canvas (a real drop event carrying the file); no node type may be missing;
//    ScriptEncode's script helper must answer; take a screenshot.
// 3. Drop the tiny workflow, queue it from the UI, and wait until the renderer's storyboard panel
//    holds one loaded thumbnail per keyframe (each card with its identity report's line); take a second screenshot.
// Prints one JSON line with what it saw; exits 1 on a timeout or a page error.
import fs from "node:fs";
import path from "node:path";
import { quietSettings, runOnComfyUI } from "./comfy_page.mjs";

const [url, uiWorkflow, apiPrompt, outDir, expected] = process.argv.slice(2);
const report = { pageErrors: [], consoleErrors: [] };

async function drop(page, text, name) {
  await page.evaluate(async (text, name) => {
    const file = new File([text], name, { type: "application/json" });
    const data = new DataTransfer();
    data.items.add(file);
    const target = document.querySelector("#graph-canvas") ?? document.querySelector("canvas") ?? document.body;
    for (const type of ["dragenter", "dragover", "drop"]) {
      target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
    }
  }, text, name);
}

await quietSettings(url);  // a first visit opens the template browser over the canvas; this user has seen it
await runOnComfyUI(url, { width: 1600, height: 1000 }, report, async (page) => {
  report.extension = true;

  const workflow = JSON.parse(fs.readFileSync(uiWorkflow, "utf8"));
  await drop(page, JSON.stringify(workflow), path.basename(uiWorkflow));
  await page.waitForFunction((n) => window.app.graph.nodes.length === n, { timeout: 30000 }, workflow.nodes.length);
  report.nodes = await page.evaluate(() => window.app.graph.nodes.map((n) => n.type));
  report.missing = await page.evaluate(() => window.app.graph.nodes.filter((n) => !window.LiteGraph.registered_node_types[n.type]).map((n) => n.type));
  await page.waitForFunction(() => window.app.graph.nodes.some((n) => n.moviedreamerScriptCheck), { timeout: 30000 });
  report.scriptCheck = await page.evaluate(() => window.app.graph.nodes.find((n) => n.moviedreamerScriptCheck).moviedreamerScriptCheck);
  await page.evaluate(() => window.app.canvas?.ds && (window.app.canvas.ds.scale = 0.45, window.app.canvas.ds.offset = [20, 20], window.app.graph.setDirtyCanvas(true, true)));
  await new Promise((r) => setTimeout(r, 500));
  await page.screenshot({ path: path.join(outDir, "movie_workflow.png") });

  const second = JSON.parse(fs.readFileSync(apiPrompt, "utf8"));  // a UI workflow ("nodes") or an API prompt
  await drop(page, JSON.stringify(second), path.basename(apiPrompt));
  const entries = second.nodes ? second.nodes.map((n) => [String(n.id), n.type]) : Object.entries(second).map(([k, v]) => [k, v.class_type]);
  await page.waitForFunction((n) => window.app.graph.nodes.length === n, { timeout: 30000 }, entries.length);
  await page.evaluate(() => window.app.queuePrompt(0, 1));
  const renderId = entries.find(([, type]) => type === "IdentityDiffusionRender")[0];
  await page.waitForFunction((id, n) => {
    const panel = window.app.graph.getNodeById(Number(id))?.moviedreamerPanel;
    const imgs = panel ? [...panel.element.querySelectorAll("img")] : [];
    return imgs.length >= n && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, { timeout: 300000, polling: 500 }, renderId, Number(expected));
  report.panel = await page.evaluate((id) => {
    const panel = window.app.graph.getNodeById(Number(id)).moviedreamerPanel;
    return [...panel.element.querySelectorAll(".moviedreamer-card")].map((c) => ({
      label: c.querySelector(".md-label")?.textContent, image: c.querySelector("img")?.naturalWidth ?? 0,
      identity: c.dataset.identity ?? null, identityText: c.querySelector(".md-identity")?.textContent ?? null,
      identityTitle: c.querySelector(".md-identity")?.title ?? null }));
  }, renderId);
  // the cards as drawn: none over another (the grid's rows were shorter than the cards, so the thumbnails covered
  // each other's labels and identity lines: an audit)
  report.cardRects = await page.evaluate((id) => {
    const panel = window.app.graph.getNodeById(Number(id)).moviedreamerPanel;
    return [...panel.element.querySelectorAll(".moviedreamer-card")].map((c) => {
      const r = c.getBoundingClientRect();
      return [r.left, r.top, r.right, r.bottom];
    });
  }, renderId);
  // every node's summary as the page holds it (the whole text, not a one-line box cut at its first line)
  await page.waitForFunction((id) => window.app.graph.getNodeById(Number(id))?.widgets?.some(
    (w) => w.name === "moviedreamer_summary"), { timeout: 60000 }, renderId);
  report.summaries = await page.evaluate(() => Object.fromEntries(window.app.graph.nodes.map((n) => {
    const w = n.widgets?.find((w) => w.name === "moviedreamer_summary");
    return [n.type, w ? { text: w.element?.textContent ?? null, value: w.value, editable: !!w.element?.isContentEditable
      || w.element?.tagName === "TEXTAREA" || w.element?.tagName === "INPUT" || w.type === "text" } : null];
  })));
  await page.screenshot({ path: path.join(outDir, "storyboard_panel.png") });

  // a page reloaded mid-run: the renderer's panel is new and the storyboard list was sent before the reload, so
  // keyframe messages arrive for cards nobody labelled (all but the first were left blank: an audit)
  report.afterReload = await page.evaluate(async (id) => {
    const { api } = await import("/scripts/api.js");
    const node = window.app.graph.getNodeById(Number(id));
    const old = node.moviedreamerPanel;
    node.widgets.splice(node.widgets.indexOf(old.widget), 1);
    old.element.remove();
    delete node.moviedreamerPanel;
    for (const index of [1, 2]) {
      api.dispatchCustomEvent("moviedreamer.keyframe", { node: id, display_node: id, index, total: 3, shot: `r${index}`,
        action: `after the reload ${index}`, image: null, identity: null });
    }
    return [...node.moviedreamerPanel.element.querySelectorAll(".md-label")].map((l) => l.textContent);
  }, renderId);
});
