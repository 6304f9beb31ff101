// Opening the real ComfyUI front-end in headless Chromium, shared by ui_check.mjs and layout_check.mjs.
import puppeteer from "puppeteer-core";

const executablePath = process.env.CHROME_PATH || "/usr/bin/chromium-headless-shell";

// Settings posted before the page loads, so nothing covers the canvas: the template browser of a first visit.
export async function quietSettings(url, settings = {}) {
  for (const [name, value] of Object.entries({ "Comfy.TutorialCompleted": true, ...settings })) {
    await fetch(`${url}/settings/${name}`, { method: "POST", body: JSON.stringify(value) });
  }
}

// A browser and a page on <url> at <viewport>, once the pack's front-end extension is loaded; page errors and
// console errors are collected into report.pageErrors / report.consoleErrors.
export async function openComfyUI(url, viewport, report) {
  const browser = await puppeteer.launch({ executablePath, headless: "shell",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage();
    await page.setViewport(viewport);
    page.on("pageerror", (e) => report.pageErrors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
    await page.goto(url, { waitUntil: "networkidle2", timeout: 120000 });
    await page.waitForFunction(() => window.app?.graph && window.LiteGraph && window.app.extensions?.length, { timeout: 120000 });
    await page.waitForFunction(() => window.app.extensions.some((e) => e.name === "MovieDreamer.FrontEnd"), { timeout: 30000 });
    return { browser, page };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

// Open ComfyUI, run `work(page)`, close the browser, print `report` as one JSON line and exit: 0, or 1 with
// report.error when anything failed (opening included).
export async function runOnComfyUI(url, viewport, report, work) {
  let opened = null;
  let code = 0;
  try {
    opened = await openComfyUI(url, viewport, report);
    await work(opened.page);
  } catch (e) {
    report.error = String(e?.stack ?? e);
    code = 1;
  } finally {
    if (opened) await opened.browser.close();
  }
  console.log(JSON.stringify(report));
  process.exit(code);
}
