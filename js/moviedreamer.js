// ComfyUI-MovieDreamer front-end.
//
// 1. Summaries: each node's result text (ScriptEncode's "3 keyframes, 2 characters ...", warnings, the info nodes'
//    reports) under the node, every line, read-only and scrollable.
// 2. Storyboard panel on ARKeyframePlanner and IdentityDiffusionRender: one card per keyframe, labelled with its
//    shot id and action; the renderer's cards fill with thumbnails as keyframes finish. It listens to the pack's
//    websocket messages "moviedreamer.storyboard" (the labelled keyframe list) and "moviedreamer.keyframe" (one
//    saved keyframe image, with its identity report when there is one: a line under the card, green when every
//    character on screen was found, red with the flags otherwise, the details in its tooltip), both sent by the
//    nodes while they run (nodes/storyboard_events.py, moviedreamer_core/identity_report.py). A run stopped by
//    Cancel or an error puts a status line at the top of the renderer's panel (the host's execution_* messages).
// 3. Script helper on ScriptEncode: the script is validated as you type through POST
//    /moviedreamer/validate_script (the same validator the node runs) and the problems or the character list
//    are shown under the script box.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SUMMARY_NODES = new Set(["ScriptEncode", "MovieDreamerScriptInfo", "ARKeyframePlanner", "MovieDreamerStoryboardInfo",
  "IdentityDiffusionRender", "ShotAnimate", "MovieDreamerGather"]);
const PANEL_NODES = new Set(["ARKeyframePlanner", "IdentityDiffusionRender"]);
const STYLE = `
.moviedreamer-panel { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 4px;
  grid-auto-rows: max-content; align-content: start;
  overflow-y: auto; font: 10px sans-serif; color: var(--input-text, #ddd); padding: 2px; box-sizing: border-box; }
.moviedreamer-card { background: rgba(0,0,0,0.25); border-radius: 4px; padding: 2px; min-height: 40px; }
.moviedreamer-card img { width: 100%; display: block; border-radius: 3px; }
.moviedreamer-card .md-slot { width: 100%; aspect-ratio: 16 / 9; background: rgba(255,255,255,0.06); border-radius: 3px; }
.moviedreamer-card .md-label { overflow: hidden; text-overflow: ellipsis; display: -webkit-box; -webkit-line-clamp: 3;
  -webkit-box-orient: vertical; line-height: 1.2; margin-top: 2px; }
.moviedreamer-card .md-identity { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; line-height: 1.2;
  margin-top: 1px; font-size: 9px; }
.moviedreamer-card .md-identity.ok { color: #8c8; } .moviedreamer-card .md-identity.flagged { color: #e88; }
.moviedreamer-card[data-identity="flagged"] { box-shadow: inset 0 0 0 1px #e88; }
.moviedreamer-panel .md-status { grid-column: 1 / -1; color: #e8b86c; font-size: 11px; }
.moviedreamer-summary { font: 11px sans-serif; padding: 4px; white-space: pre-wrap; overflow-y: auto; box-sizing: border-box;
  color: var(--input-text, #ddd); user-select: text; }
.moviedreamer-check { font: 11px sans-serif; padding: 4px; white-space: pre-wrap; overflow-y: auto; box-sizing: border-box; }
.moviedreamer-check.ok { color: #8c8; } .moviedreamer-check.bad { color: #e88; }
`;

function addStyle() {
  if (document.getElementById("moviedreamer-style")) return;
  const style = document.createElement("style");
  style.id = "moviedreamer-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function nodeFor(detail) {
  const id = detail?.display_node ?? detail?.node;
  if (id == null) return null;
  return app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id) ?? null;
}

// ------------------------------------------------------------------------------------------ storyboard panel

function panelOf(node) {
  if (node.moviedreamerPanel) return node.moviedreamerPanel;
  addStyle();
  const element = document.createElement("div");
  element.className = "moviedreamer-panel";
  element.dataset.moviedreamerPanel = String(node.id);
  const widget = node.addDOMWidget("moviedreamer_storyboard", "moviedreamer_storyboard", element, {
    serialize: false, hideOnZoom: false, getMinHeight: () => 120,
  });
  widget.serialize = false;
  node.moviedreamerPanel = { element, widget, cards: [] };
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1] + 120)]);
  return node.moviedreamerPanel;
}

function setStoryboard(node, keyframes) {
  const panel = panelOf(node);
  panel.element.replaceChildren();
  panel.cards = keyframes.map((k) => {
    const card = document.createElement("div");
    card.className = "moviedreamer-card";
    card.dataset.index = String(k.index);
    const slot = document.createElement("div");
    slot.className = "md-slot";
    const label = document.createElement("div");
    label.className = "md-label";
    label.textContent = `${k.shot} · ${k.action}`;
    label.title = `${k.shot} (keyframe ${k.index + 1})${k.characters?.length ? " — " + k.characters.join(", ") : ""}\n${k.action}`;
    card.append(slot, label);
    panel.element.appendChild(card);
    return card;
  });
  node.setDirtyCanvas?.(true, true);
}

function setKeyframe(node, detail) {
  const panel = panelOf(node);
  panel.ran = true;  // a page reloaded mid-run knows the renderer from its messages
  let card = panel.cards[detail.index];
  if (!card) {  // a keyframe before (or without) the list: make its card
    setStoryboard(node, Array.from({ length: detail.total }, (_, i) => ({ index: i, shot: i === detail.index ? detail.shot : "", action: i === detail.index ? detail.action : "" })));
    card = panel.cards[detail.index];
  }
  const label = card.querySelector(".md-label");
  if (label && !label.textContent.trim().replace("·", "").trim() && (detail.shot || detail.action)) {
    // a card made by a keyframe message before the list (a page reloaded mid-run): label it from this message
    label.textContent = `${detail.shot} · ${detail.action}`;
    label.title = `${detail.shot} (keyframe ${detail.index + 1})\n${detail.action}`;
  }
  setIdentity(card, detail.identity);
  if (!detail.image) return;
  const params = new URLSearchParams({ ...detail.image, rand: String(Math.random()).slice(2) });
  const img = document.createElement("img");
  img.src = api.apiURL(`/view?${params}`);
  img.alt = `${detail.shot}: ${detail.action}`;
  card.querySelector(".md-slot, img")?.replaceWith(img);
  card.classList.add("done");
  node.setDirtyCanvas?.(true, true);
}

// The keyframe's identity report (identity_report.panel_view): one line under the card, a red edge round a flagged
// card, the details in the tooltip of the line and of the thumbnail.
function similarity(c) {
  if (c.flags?.includes("unchecked")) return "no references";
  return c.similarity == null ? "no face" : c.similarity.toFixed(2);
}

function setIdentity(card, identity) {
  card.querySelector(".md-identity")?.remove();
  if (!identity) {
    delete card.dataset.identity;
    card.removeAttribute("title");
    return;
  }
  const line = document.createElement("div");
  const state = identity.ok ? "ok" : "flagged";
  line.className = `md-identity ${state}`;
  const who = (identity.characters ?? []).map((c) => `${c.name} ${similarity(c)}`);
  line.textContent = identity.ok ? `✓ ${who.join(" · ") || "nobody on screen"}` : `⚠ ${(identity.flags ?? []).join("; ")}`;
  line.title = ["Identity report (similarity to the character's references):",
    ...(identity.characters ?? []).map((c) => `${c.name}: ${similarity(c)}${c.flags?.length ? " — " + c.flags.join(", ") : ""}`),
    ...(identity.flags ?? [])].join("\n");
  card.dataset.identity = state;
  card.title = line.title;  // hovering the thumbnail shows it too (the label keeps its own tooltip)
  card.appendChild(line);
}

// A run stopped by Cancel or by an error: the panel says so, or it looked like a render still under way.
function setStatus(node, text) {
  const panel = node.moviedreamerPanel;
  if (!panel) return;
  panel.element.querySelector(".md-status")?.remove();
  if (!text) return;
  const status = document.createElement("div");
  status.className = "md-status";
  status.textContent = text;
  panel.element.prepend(status);
  node.setDirtyCanvas?.(true, true);
}

// Only a renderer that started in this run and did not finish says it stopped: a distributed master's panel holds its
// own share, and a renderer that finished (or did not run) is not what a later node's error stopped.
function stoppedPanels(why) {
  for (const node of app.graph?.nodes ?? []) {  // the renderer's panel: the planner's cards never get thumbnails
    const panel = node.moviedreamerPanel;
    if (!panel || (node.comfyClass ?? node.type) !== "IdentityDiffusionRender" || !panel.ran || panel.finished) continue;
    const done = panel.element.querySelectorAll(".moviedreamer-card.done").length;
    const total = panel.cards.length;
    setStatus(node, `${why} after ${done} of ${total} keyframes: the finished ones are kept in the `
      + "project folder; queue again to make the rest.");
  }
}

function panelOfEvent(detail) {  // "executing" and "executed" carry a node id, or an object with one
  const node = nodeFor(detail && typeof detail === "object" ? detail : { node: detail });
  return node?.moviedreamerPanel ?? null;
}

api.addEventListener("execution_start", () => {
  for (const node of app.graph?.nodes ?? []) {
    setStatus(node, "");
    if (node.moviedreamerPanel) Object.assign(node.moviedreamerPanel, { ran: false, finished: false });
  }
});
api.addEventListener("executing", ({ detail }) => {
  const panel = panelOfEvent(detail);
  if (panel) panel.ran = true;
});
api.addEventListener("executed", ({ detail }) => {
  const panel = panelOfEvent(detail);
  if (panel) panel.finished = true;
});
api.addEventListener("execution_interrupted", () => stoppedPanels("Cancelled"));
api.addEventListener("execution_error", () => stoppedPanels("Stopped by an error"));
api.addEventListener("moviedreamer.storyboard", ({ detail }) => {
  const node = nodeFor(detail);
  if (node && PANEL_NODES.has(node.comfyClass ?? node.type)) setStoryboard(node, detail.keyframes ?? []);
});
api.addEventListener("moviedreamer.keyframe", ({ detail }) => {
  const node = nodeFor(detail);
  if (node && PANEL_NODES.has(node.comfyClass ?? node.type)) setKeyframe(node, detail);
});

// ------------------------------------------------------------------------------------------ script helper

function describe(result) {
  if (result.ok) {
    const who = result.characters.length ? result.characters.join(", ") : "none";
    // notes: actions naming a character the shot does not show (what they say of it reaches nobody's mention)
    const notes = (result.notes ?? []).map((n) => `\nNote, ${n.path}: ${n.message}`).join("");
    return `✓ ${result.shots} shots, ${result.keyframes} keyframes, ${result.seconds} s. Characters: ${who}${notes}`;
  }
  const lines = (result.issues ?? []).map((i) => (i.path ? `${i.path}: ${i.message}` : i.message));
  const count = result.problems ?? lines.length;  // the server lists at most 50 and counts the rest
  const who = result.characters?.length ? `\nCharacters: ${result.characters.join(", ")}` : "";
  return `✗ ${count === 1 ? "1 problem" : count + " problems"}:\n${lines.join("\n")}${who}`;
}

function attachScriptHelper(node) {
  addStyle();
  const script = node.widgets?.find((w) => w.name === "script");
  const file = node.widgets?.find((w) => w.name === "script_file");
  if (!script) return;
  const element = document.createElement("div");
  element.className = "moviedreamer-check";
  element.dataset.moviedreamerCheck = String(node.id);
  const widget = node.addDOMWidget("moviedreamer_script_check", "moviedreamer_script_check", element, {
    serialize: false, hideOnZoom: false, getMinHeight: () => 60,
  });
  widget.serialize = false;
  let timer = null;
  let generation = 0;
  const check = async () => {
    const mine = ++generation;
    try {
      const response = await api.fetchApi("/moviedreamer/validate_script", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ script: script.value ?? "", script_file: file?.value ?? "" }),
      });
      const result = await response.json();
      if (mine !== generation) return;  // a newer edit is being checked
      element.textContent = describe(result);
      element.className = `moviedreamer-check ${result.ok ? "ok" : "bad"}`;
      node.moviedreamerScriptCheck = result;
    } catch (e) {
      if (mine === generation) element.textContent = `script check unavailable: ${e}`;
    }
  };
  const later = () => { clearTimeout(timer); timer = setTimeout(check, 400); };
  for (const w of [script, file]) {
    if (!w) continue;
    const callback = w.callback;
    w.callback = function () { const r = callback?.apply(this, arguments); later(); return r; };
  }
  const input = script.inputEl ?? script.element;
  input?.addEventListener?.("input", later);
  node.moviedreamerCheckScript = check;
  later();
}

// ------------------------------------------------------------------------------------------ registration

app.registerExtension({
  name: "MovieDreamer.FrontEnd",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (SUMMARY_NODES.has(nodeData.name)) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        onExecuted?.apply(this, arguments);
        const text = Array.isArray(message?.text) ? message.text.join("\n") : message?.text;
        if (!text) return;
        // every line of it, read-only: a one-line text box showed the first line cut, and hid the warnings on the
        // lines after it (the planner's scene WARNING, Script Info's whole report)
        let widget = this.widgets?.find((w) => w.name === "moviedreamer_summary");
        if (!widget) {
          addStyle();
          const element = document.createElement("div");
          element.className = "moviedreamer-summary";
          widget = this.addDOMWidget("moviedreamer_summary", "moviedreamer_summary", element, {
            // one widget row at least, as the text box it replaces (the workflows are laid out for it); a taller node
            // shows more lines, and the box scrolls
            serialize: false, hideOnZoom: false, getMinHeight: () => 20,
            getValue: () => element.textContent, setValue: (v) => { element.textContent = v; },
          });
          widget.serialize = false;
        }
        widget.value = text;
        if (widget.element) {
          widget.element.textContent = text;
          widget.element.title = text;  // hovering shows it whole too
        }
        this.setDirtyCanvas?.(true, true);
      };
    }
    if (nodeData.name === "ScriptEncode") {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        attachScriptHelper(this);
        return r;
      };
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function () {  // a loaded workflow: check its script once values are set
        const r = onConfigure?.apply(this, arguments);
        setTimeout(() => this.moviedreamerCheckScript?.(), 0);
        return r;
      };
    }
  },
});
