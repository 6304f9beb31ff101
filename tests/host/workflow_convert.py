"""UI-format workflow -> API-format prompt, the way the front-end's ``graphToPrompt`` does it, for tests.

Widget values are matched to inputs in the node's ``input_order`` (required, then optional), skipping
inputs fed by a link; a seed widget with ``control_after_generate`` and an upload combo each carry one
extra value in ``widgets_values`` that is not an input.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def ui_to_api(workflow: dict, input_types) -> dict:
    """``input_types(class_type) -> {"required": {...}, "optional": {...}}`` (the host's INPUT_TYPES)."""
    links = {l[0]: (str(l[1]), l[2]) for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (2, 4):
            continue
        types = input_types(node["type"])
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                if name in linked:
                    inputs[name] = list(linked[name])
                    continue
                if not _is_widget(spec) or not values:
                    continue
                inputs[name] = values.pop(0)
                opts = spec[1] if len(spec) > 1 else {}
                if opts.get("control_after_generate") or opts.get("image_upload"):
                    values.pop(0)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


COLLECTOR = "DistributedCollector"  # ComfyUI-Distributed's collector: outputs images (0) and audio (1)
COLLECTOR_INPUTS = ("images", "audio")  # what it returns unchanged on an ordinary queue (its pass-through)


def without_collector(prompt: dict) -> dict:
    """An API-format prompt with every DistributedCollector left out and its consumers wired to what it would pass
    through on an ordinary queue (its ``images`` and ``audio`` inputs): the workflow as one instance runs it, for a
    host that does not have ComfyUI-Distributed."""
    collectors = {k: v["inputs"] for k, v in prompt.items() if v.get("class_type") == COLLECTOR}
    out = {}
    for node_id, node in prompt.items():
        if node_id in collectors:
            continue
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in collectors:
                source = collectors[str(value[0])].get(COLLECTOR_INPUTS[value[1]])
                if source is None:
                    raise ValueError(f"node {node_id} input {name}: the collector {value[0]} has no "
                                     f"{COLLECTOR_INPUTS[value[1]]} input to pass through")
                value = list(source)
            inputs[name] = value
        out[node_id] = {**node, "inputs": inputs}
    return out
