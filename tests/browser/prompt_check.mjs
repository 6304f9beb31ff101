// The prompt the real front-end queues for each UI workflow (tests/distributed/test_workflows.py compares it with
// the workflow's API twin).
//
// node prompt_check.mjs <server url> <UI workflow.json> [<UI workflow.json> ...]
//
// For each workflow: app.loadGraphData(json) (as dropping the file does), then app.graphToPrompt(), what the Queue
// button sends (its "output": the API-format prompt). Prints one JSON line {"prompts": {<path as given>: prompt},
// pageErrors, consoleErrors}; exits 1 on a timeout or another error of this script.
import fs from "node:fs";
import { quietSettings, runOnComfyUI } from "./comfy_page.mjs";

const [url, ...files] = process.argv.slice(2);
const report = { prompts: {}, pageErrors: [], consoleErrors: [] };
await quietSettings(url, { "Comfy.Minimap.Visible": false });
await runOnComfyUI(url, { width: 1920, height: 1080 }, report, async (page) => {
  for (const file of files) {
    const workflow = JSON.parse(fs.readFileSync(file, "utf8"));
    await page.evaluate(async (wf) => { await window.app.loadGraphData(wf, true, true, "prompt_check"); }, workflow);
    await page.waitForFunction((n) => window.app.graph.nodes.length === n, { timeout: 30000 }, workflow.nodes.length);
    report.prompts[file] = await page.evaluate(async () => (await window.app.graphToPrompt()).output);
  }
});
