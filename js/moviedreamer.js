// ComfyUI-MovieDreamer front-end: shows each node's one-line summary (the `text` it sends back with its
// result) under the node, e.g. ScriptEncode's "3 keyframes, 2 characters (3 references); text ... ".
import { app } from "../../scripts/app.js";

const SUMMARY_NODES = new Set(["ScriptEncode", "MovieDreamerScriptInfo", "ARKeyframePlanner", "MovieDreamerStoryboardInfo", "IdentityDiffusionRender", "ShotAnimate"]);

app.registerExtension({
  name: "MovieDreamer.Summary",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SUMMARY_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = Array.isArray(message?.text) ? message.text.join("\n") : message?.text;
      if (!text) return;
      let widget = this.widgets?.find((w) => w.name === "moviedreamer_summary");
      if (!widget) {
        widget = this.addWidget("text", "moviedreamer_summary", "", () => {}, { serialize: false });
        widget.serialize = false;
      }
      widget.value = text;
      this.setDirtyCanvas?.(true, true);
    };
  },
});
