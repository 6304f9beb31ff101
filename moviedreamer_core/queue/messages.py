"""The server's refusals and errors as readable lines (one per node error; missing model files name their folder)."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..script.problems import REPORT_POINTER


#: model folder of a missing file, by input name (and by class for names several loaders share)
MODEL_FOLDERS = {
    "ckpt_name": "checkpoints", "unet_name": "diffusion_models", "vae_name": "vae", "lora_name": "loras",
    "control_net_name": "controlnet", "style_model_name": "style_models", "upscale_model": "upscale_models",
    "upscale_model_name": "upscale_models", "gligen_name": "gligen", "hypernetwork_name": "hypernetworks",
    "clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders",
    "clip_name4": "text_encoders", "ipadapter_file": "ipadapter", "planner_name": "moviedreamer",
    "renderer_name": "moviedreamer", "model_name": "checkpoints", "audio_encoder_name": "audio_encoders",
}

CLASS_MODEL_FOLDERS = {("CLIPVisionLoader", "clip_name"): "clip_vision", ("CLIPLoader", "clip_name"): "text_encoders",
                       ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints"}

INPUT_FOLDER_INPUTS = {"image", "video", "audio", "file", "script_file"}
#: How the renderer loader's choice names a file of ``models/ipadapter`` (the nodes' ``IPADAPTER_PREFIX``).
IPADAPTER_CHOICE = "ipadapter/"


def node_label(prompt: dict, node_id: Any) -> str:
    """``node 9 IdentityDiffusionRender`` (plus the title when the workflow gives one that differs)."""
    node = prompt.get(str(node_id)) or {}
    cls = node.get("class_type", "?")
    title = (node.get("_meta") or {}).get("title")
    return f"node {node_id} {cls}" + (f" \"{title}\"" if title and title != cls else "")


def _id_key(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


def model_folder(class_type: str, input_name: str) -> Optional[str]:
    """The models folder a file-name input reads (``ckpt_name`` -> ``checkpoints``), or None if unknown."""
    return CLASS_MODEL_FOLDERS.get((class_type, input_name)) or MODEL_FOLDERS.get(input_name)


def _choices_preview(config: Any, limit: int = 6, folder_prefix: Optional[str] = None) -> str:
    """``; the server has: a, b (+3 more)``. ``folder_prefix``: the renderer loader lists two folders in one choice
    (``ipadapter/<file>`` beside the files of ``models/moviedreamer``): ``"ipadapter/"`` lists only the first, without
    the prefix; ``""`` only the others."""
    options = None
    if isinstance(config, list) and config:
        options = config[0] if isinstance(config[0], list) else (config[1] or {}).get("options") if len(config) > 1 and isinstance(config[1], dict) else None
    if not isinstance(options, list):
        return ""
    if folder_prefix:
        options = [str(o)[len(folder_prefix):] for o in options if str(o).startswith(folder_prefix)]
    elif folder_prefix == "":
        options = [o for o in options if not str(o).startswith(IPADAPTER_CHOICE)]
    if not options:
        return "; the server has none there"
    shown = ", ".join(str(o) for o in options[:limit])
    return f"; the server has: {shown}" + (f" (+{len(options) - limit} more)" if len(options) > limit else "")


def format_node_error(node_id: str, class_type: str, err: dict) -> str:
    """One readable line for one validation error of one node."""
    extra = err.get("extra_info") or {}
    name = extra.get("input_name") or ""
    where = f"node {node_id} ({class_type})" + (f" input {name}" if name else "")
    kind = err.get("type", "")
    if kind == "value_not_in_list" and name:
        value = extra.get("received_value")
        renderer = name.startswith("renderer_name")
        ipadapter = renderer and isinstance(value, str) and value.startswith(IPADAPTER_CHOICE)
        preview = _choices_preview(extra.get("input_config"),
                                   folder_prefix=IPADAPTER_CHOICE if ipadapter else "" if renderer else None)
        value_text = value if isinstance(value, str) else json.dumps(value)
        if ipadapter:
            return (f"{where}: model file \"{value[len(IPADAPTER_CHOICE):]}\" not found: put it in models/ipadapter/ "
                    f"on the server (or a folder extra_model_paths.yaml adds){preview}")
        folder = model_folder(class_type, name)
        if folder:
            return (f"{where}: model file \"{value_text}\" not found: put it in models/{folder}/ on the server "
                    f"(or a folder extra_model_paths.yaml adds){preview}")
        if name in INPUT_FOLDER_INPUTS:
            return f"{where}: file \"{value_text}\" not found in the server's input folder{preview}"
        return f"{where}: \"{value_text}\" is not one of the allowed values{preview}"
    message = err.get("message") or kind or "error"
    details = err.get("details") or ""
    if kind == "custom_validation_failed" and " - " in details:
        # the node's own check, which the host repeats once per input: "<input> - <the node's message>"
        return f"node {node_id} ({class_type}): {details.split(' - ', 1)[1]}"
    return f"{where}: {message}" + (f": {details}" if details and details not in (message, name) else "")


def _pointed_input(err: dict) -> Optional[str]:
    """The input whose report ``err`` only points to ("<input> - see the problems listed under script":
    ``REPORT_POINTER``), or ``None`` for an error that says something itself."""
    said = str(err.get("details") or "").split(" - ", 1)[-1]
    return said[len(REPORT_POINTER):] if said.startswith(REPORT_POINTER) else None


def format_refusal(body: Any, prompt: Optional[dict] = None, refused: str = "the server refused the prompt") -> str:
    """The server's HTTP 400 answer to ``POST /prompt`` (or ``execution.validate_prompt``'s error and node errors, as
    the same dict) as text: a headline beginning with ``refused`` and one line per node error; an input that only
    points to the report the node lists under another input is left out."""
    if not isinstance(body, dict):
        return f"{refused}: {body}"
    lines = []
    error = body.get("error")
    node_errors = body.get("node_errors") or {}
    if isinstance(error, dict):
        head = error.get("message") or error.get("type") or "the prompt was refused"
        details = error.get("details")
        if details and not node_errors:
            head += f": {details}"
        lines.append(f"{refused}: {head}")
    elif error:
        lines.append(f"{refused}: {error}")
    else:
        lines.append(refused)
    for nid in sorted(node_errors, key=_id_key):
        entry = node_errors[nid] or {}
        cls = entry.get("class_type") or ((prompt or {}).get(str(nid)) or {}).get("class_type", "?")
        errs = entry.get("errors") or []
        if not errs:
            lines.append(f"  node {nid} ({cls}): refused")
        listed = {(e.get("extra_info") or {}).get("input_name") for e in errs if _pointed_input(e) is None} - {None}
        seen = set()
        for err in errs:
            if _pointed_input(err) in listed:
                continue
            text = format_node_error(str(nid), cls, err)
            if text in seen:
                continue
            seen.add(text)
            first, *rest = text.split("\n")
            lines.append("  " + first)
            lines.extend("    " + r.strip() for r in rest if r.strip())
    return "\n".join(lines)

def format_not_sent(node_errors: dict, prompt: dict, input_dir_hint: bool = False) -> str:
    """What the check before sending (``check_choices``) found, said as what happened: the prompt was *not sent*, and
    not "the server refused the prompt", which it never saw (a review). One line per input names the missing file and
    the server folder it is looked up in (``format_node_error``). The command does not post a prompt it knows to be
    broken to let the server list everything at once: the host queues a prompt whose outputs validate only in part
    (the failed ones are dropped) and does not check a V3 ``COMBO``'s value at all, so such a prompt may run, for
    hours, until the node with the missing file fails. So the message says that the server's own validation, which
    covers the rest (such as the script's reference images in its input folder), comes when these are fixed, and how
    to check the reference files here now (``input_dir_hint``: ``--input-dir`` was not given and the workflow holds a
    script the command reads, ``workflow.check_scripts``)."""
    n = sum(len((entry or {}).get("errors") or []) for entry in node_errors.values())
    head = (f"not queued: checked before sending against the server's node list (/object_info), {n} "
            f"input{'s' if n != 1 else ''} name{'s' if n == 1 else ''} a model file or choice the server does not have "
            "(the prompt was not sent)")
    text = format_refusal({"node_errors": node_errors}, prompt, refused=head)
    tail = ("The server has not validated the rest of the prompt yet: once these are fixed, it may refuse it for "
            "other problems (such as the script's reference images missing from its input folder)")
    if input_dir_hint:
        tail += "; --input-dir <ComfyUI>/input checks the script's reference files now"
    return f"{text}\n{tail}."


_MISSING_MODEL = re.compile(r"Model in folder '([^']+)' with filename '([^']+)' not found")


def format_execution_error(data: dict, prompt: Optional[dict] = None) -> str:
    """The ``execution_error`` message as one line naming the node; a missing model file names its folder."""
    nid = data.get("node_id")
    cls = data.get("node_type") or ((prompt or {}).get(str(nid)) or {}).get("class_type", "?")
    message = str(data.get("exception_message") or "").strip()
    # the host names the exception with its module, which for a pack is the folder the host loaded it from
    # ("/home/me/ComfyUI/custom_nodes/ComfyUI-MovieDreamer.moviedreamer_core.script.problems.ScriptError"): the class
    kind = str(data.get("exception_type") or "error").rsplit(".", 1)[-1]
    text = f"the run failed in node {nid} ({cls}): {kind}: {message}"
    missing = _MISSING_MODEL.search(message)
    if missing:
        text += f"\n  model file \"{missing.group(2)}\" is missing: put it in models/{missing.group(1)}/ on the server"
    return text


def combo_options(spec: Any) -> Optional[list]:
    """The choices of a combo input spec from ``/object_info`` (``[[...], {...}]`` or ``["COMBO", {"options": [...]}]``)."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return spec[1]["options"]
    return None


def check_choices(prompt: dict, object_info: dict) -> dict:
    """Literal combo values that are not among the server's choices, as ``node_errors`` in the server's own
    format (``value_not_in_list``). The host validates list-style combos itself, but not every V3 ``COMBO``
    (e.g. the pack's planner and renderer file names), so a missing model file is caught here before queueing.
    Inputs fed by links, empty choice lists and annotated names (``x.png [output]``) are left to the server."""
    node_errors: dict = {}
    for nid, node in prompt.items():
        info = object_info.get(node.get("class_type"))
        if not isinstance(info, dict):
            continue
        specs = {**(info.get("input") or {}).get("required", {}), **(info.get("input") or {}).get("optional", {})}
        for name, value in (node.get("inputs") or {}).items():
            options = combo_options(specs.get(name))
            if options is None or isinstance(value, list) or value in options:
                continue
            if not options and not model_folder(node["class_type"], name):
                continue  # choices the server fills in elsewhere (remote lists)
            if isinstance(value, str) and re.search(r" \[(output|input|temp)\]$", value):
                continue
            entry = node_errors.setdefault(nid, {"errors": [], "dependent_outputs": [], "class_type": node["class_type"]})
            entry["errors"].append({"type": "value_not_in_list", "message": "Value not in list",
                                    "details": f"{name}: {value!r} not in the server's list",
                                    "extra_info": {"input_name": name, "input_config": specs.get(name), "received_value": value}})
    return node_errors


def unreachable_message(url: str, reason: Any = "") -> str:
    why = f" ({reason})" if reason else ""
    return (f"no ComfyUI server at URL: {url}{why}; start it with python main.py in your ComfyUI folder "
            "(add --listen/--port to match), or pass --server URL")
