"""Make a toy movie on the CPU in about a minute: ``python cli/toycinema_demo.py``.

It runs the toy cinema workflow (``workflows/api/moviedreamer_toycinema_api.json``) with ComfyUI's own validator
and executor in this process, so the movie goes through exactly the nodes a user's graph runs: ScriptEncode
(MiniLM sentences, toy identities) -> the toy planner -> IdentityDiffusionRender on the toy UNet -> ShotAnimate
(animatic) and the storyboard sheet. It writes ``output/moviedreamer/<project>/<project>.mp4`` and
``storyboard.png`` in ComfyUI's output folder (or ``--output-dir``) and prints both paths.

    python cli/toycinema_demo.py                       # the workflow's own script
    python cli/toycinema_demo.py --film-seed 123       # a new story from the toy grammar
    python cli/toycinema_demo.py --script my_toy.yaml  # your script (characters Ava, Bo, Cy, Dee, Eli, Fen)

ComfyUI is imported as a library (``--comfyui``, ``$COMFYUI_PATH``, or the ComfyUI this pack sits in).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
import uuid

try:  # a submodule of the pack (tests), or a script run from anywhere
    from .host_library import PACK_DIR, comfyui_folder, core_module, import_host
except ImportError:  # a script: its folder is on sys.path, except in isolated mode (python -I)
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # appended: it shadows nothing
    from host_library import PACK_DIR, comfyui_folder, core_module, import_host

_types = core_module("argument_types")
seed, whole_number = _types.seed, _types.whole_number
_limits = core_module("script/limits")
#: The longest ``--film-seed`` story: every one of its shots (up to 3 keyframes of up to 2.5 s, ``grammar.add_shot``)
#: must fit the movie's duration limit as well as the script's shot limit. ``MAX_SHOTS`` (5,000) alone let ``--shots``
#: ask for stories of about 16,500 s, which ScriptEncode refused after ComfyUI had loaded ("split it into several
#: scripts", which the demo's user cannot do; an audit).
LONGEST_TOY_SHOT_S = 3 * 2.5
MAX_SHOTS = min(_limits.MAX_SHOTS, int(_limits.MAX_TOTAL_DURATION_S // LONGEST_TOY_SHOT_S))

WORKFLOW = PACK_DIR / "workflows" / "api" / "moviedreamer_toycinema_api.json"
#: Shots of a ``--film-seed`` story unless ``--shots`` says.
DEFAULT_SHOTS = 8


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="toycinema_demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=None, help="the ComfyUI folder (default: $COMFYUI_PATH or the one around this pack)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--script", default=None, help="a toy script file (YAML or JSON; references: [id] index the "
                        "six characters Ava=0 ... Fen=5)")
    source.add_argument("--film-seed", type=seed, default=None, help="write a new story with the toy grammar from this seed")
    p.add_argument("--shots", type=whole_number(1, MAX_SHOTS, "a toy story that long always fits a movie's 4 hours"), default=None,
                   help=f"shots of a --film-seed story (default {DEFAULT_SHOTS})")
    p.add_argument("--seed", type=seed, default=None, help="planning and rendering seed (default: the workflow's)")
    p.add_argument("--project", default=None, help="movie project name (default: the workflow's, toy_cinema; with "
                   "--film-seed S toy_film_S, with --script the script's title)")
    p.add_argument("--output-dir", default=None, help="ComfyUI's output folder for this run (default: ComfyUI's own)")
    p.add_argument("--threads", type=whole_number(1, core_module("threads").MAX_THREADS), default=None, help="torch CPU threads (default: $MOVIEDREAMER_THREADS, else 1: "
                   "a second thread saves the toy models next to nothing, and a busy machine makes it many times slower)")
    args = p.parse_args(argv)
    if args.shots is not None and args.film_seed is None:
        p.error("--shots sets the length of a --film-seed story: give --film-seed too")
    args.shots = DEFAULT_SHOTS if args.shots is None else args.shots
    if args.script is not None and not os.path.isfile(args.script):
        p.error(f"--script: no such file: {args.script}")
    if args.project is not None and not args.project.strip():
        p.error("--project must name the movie project (leave it out for the workflow's own name)")
    if args.project is None and args.film_seed is not None:
        # each story its own project: a --film-seed movie went into toy_cinema/, replacing the workflow's movie (and
        # the previous seed's) without a word (an audit)
        args.project = f"toy_film_{args.film_seed}"
    elif args.project is None and args.script is not None:
        args.project = ""  # the script's title, as the nodes name a project when project_name is empty
    return args


class _Printer:
    """The executor's message sink (the server's role): one line per node, progress on one line."""

    client_id = "moviedreamer-toycinema-demo"

    def __init__(self, prompt: dict):
        self.prompt = prompt
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.errors: list = []

    def send_sync(self, event, data, sid=None):
        if event == "executing" and isinstance(data, dict) and data.get("node"):
            node = self.prompt.get(str(data["node"]), {})
            print(f"\n  {node.get('class_type', data['node'])}", end="", file=sys.stderr, flush=True)
        elif event == "executed" and isinstance(data, dict):
            self._summary(data)
        elif event in ("execution_error", "execution_interrupted"):
            self.errors.append((event, data))

    #: The nodes whose text (``ui.PreviewText``) the demo prints: what was made this run and what was reused, so that
    #: a run after a kill or a Ctrl-C says what it kept (it only got faster before: an audit).
    SUMMARISED = ("IdentityDiffusionRender", "ShotAnimate")

    def _summary(self, data: dict) -> None:
        node = self.prompt.get(str(data.get("node")), {})
        texts = (data.get("output") or {}).get("text") if node.get("class_type") in self.SUMMARISED else None
        for text in texts if isinstance(texts, list) else ():
            for line in str(text).splitlines():
                print(f"\n    {line}", end="", file=sys.stderr, flush=True)

    def queue_updated(self):
        pass


def _progress_hook(value, total, preview_image, prompt_id=None, node_id=None):
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()
    print(f"\r  {value}/{total}" + " " * 8, end="", file=sys.stderr, flush=True)


def _pack_module() -> str:
    """The name under which the host imported this pack (it derives it from the folder's path)."""
    init = os.path.realpath(PACK_DIR / "__init__.py")
    for name, module in list(sys.modules.items()):
        if os.path.realpath(getattr(module, "__file__", None) or "") == init:
            return name
    raise RuntimeError("this pack is not loaded")


def _threads(requested):
    """``--threads``, else ``$MOVIEDREAMER_THREADS``, else one (``moviedreamer_core/threads.py``, read from its file:
    the pack is not importable before ComfyUI is)."""
    module = core_module("threads")
    try:
        return module.configured_threads(requested, module.SMALL_MODEL_THREADS)
    except ValueError as e:
        raise SystemExit(str(e))


def toy_prompt(args) -> dict:
    """The toy workflow, with the script, seed and project name the command line asked for."""
    prompt = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    by_type = {node["class_type"]: node for node in prompt.values()}
    if args.script:
        # read as `script validate` and the queue command read scripts: at most MAX_SCRIPT_FILE_BYTES, a named pipe
        # nobody writes to refused (before: open().read(), so /dev/zero was read until memory ran out and a FIFO hung)
        text_files = core_module("text_files")
        try:
            by_type["ScriptEncode"]["inputs"]["script"] = text_files.read_text_file(
                args.script, _limits.MAX_SCRIPT_FILE_BYTES)
        except text_files.TextFileError as e:
            raise SystemExit(f"--script {args.script} {e.said_with({'encoding': '; save it as UTF-8'})}")
    elif args.film_seed is not None:
        toycinema = f"{_pack_module()}.moviedreamer_core.toycinema"
        script_text = importlib.import_module(f"{toycinema}.film_script").script_text
        generate_film = importlib.import_module(f"{toycinema}.grammar").generate_film
        by_type["ScriptEncode"]["inputs"]["script"] = script_text(generate_film(args.film_seed, n_shots=args.shots), "world")
    for node in prompt.values():
        inputs = node["inputs"]
        if args.seed is not None and "seed" in inputs:
            inputs["seed"] = args.seed
        if args.project is not None and "project_name" in inputs:
            inputs["project_name"] = args.project
    return prompt


def _quiet_transformers() -> None:
    """The demo shows one line per node; transformers' own "Loading weights" bar (ScriptEncode's MiniLM encoder,
    transformers 5) broke ScriptEncode's line. ``HF_HUB_DISABLE_PROGRESS_BARS=0`` keeps it. transformers reads the
    variable when it is imported; when the host imported it already, its switch is turned too."""
    if os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1") == "1" and "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def run(args) -> dict:
    """Load the host and this pack, run the toy workflow; returns ``{"movie": path, "storyboard": path, "seconds":
    the whole run (after the interpreter started), "loading": the part spent loading ComfyUI and the pack,
    "threads": torch's CPU threads}``."""
    begun = time.perf_counter()
    root = comfyui_folder(args.comfyui)
    threads = _threads(args.threads)
    os.environ["MOVIEDREAMER_THREADS"] = str(threads)  # the nodes' own work follows the same count (threads.py)
    folder_paths = import_host(root)
    import torch

    torch.set_num_threads(threads)
    if args.output_dir:
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"--output-dir {args.output_dir}: cannot be created ({e.strerror or e})")
        folder_paths.set_output_directory(os.path.abspath(args.output_dir))
    import comfy.utils
    import execution
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(PACK_DIR), ignore=set(nodes.NODE_CLASS_MAPPINGS), module_parent="custom_nodes")):
        raise SystemExit("ComfyUI could not load this pack (see the log above)")
    comfy.utils.set_progress_bar_global_hook(_progress_hook)
    _quiet_transformers()
    loaded = time.perf_counter()
    prompt = toy_prompt(args)
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, json.loads(json.dumps(prompt)), None))
    if not valid:
        messages = importlib.import_module(f"{_pack_module()}.moviedreamer_core.queue.messages")
        raise SystemExit(messages.format_refusal({"error": error, "node_errors": node_errors}, prompt,
                                                 refused="the toy workflow was refused"))
    printer = _Printer(prompt)
    executor = execution.PromptExecutor(printer, cache_type=False)
    executor.execute(prompt, prompt_id, {"client_id": printer.client_id}, outputs)
    print(file=sys.stderr)
    if printer.errors or not executor.success:
        event, data = printer.errors[0] if printer.errors else ("execution_error", {})
        raise SystemExit(failure_message(event, data, prompt))
    name = next(n["inputs"].get("project_name") for n in prompt.values() if n["class_type"] == "ShotAnimate")
    if not (name or "").strip():  # as the nodes name it: project_name.strip() or the script's title (--script)
        script_module = importlib.import_module(f"{_pack_module()}.moviedreamer_core.script")
        text = next(n["inputs"]["script"] for n in prompt.values() if n["class_type"] == "ScriptEncode")
        name = script_module.load_script(text).title
    projects = importlib.import_module(f"{_pack_module()}.moviedreamer_core.project")
    output = folder_paths.get_output_directory()
    folder = projects.MovieProject.folder_for(output, name)  # the nodes' folder, found, not created (MovieProject would)
    root = projects.MovieProject.root_of(output, folder)
    result = {"movie": os.path.join(root, f"{folder}.mp4"), "storyboard": os.path.join(root, "storyboard.png"),
              "seconds": time.perf_counter() - begun, "loading": loaded - begun, "threads": threads}
    for key in ("movie", "storyboard"):
        if not os.path.isfile(result[key]):
            raise SystemExit(f"the workflow ran but {result[key]} is missing")
    result["flagged"] = identity_flags(os.path.join(root, "manifest.json"), projects.MAX_MANIFEST_BYTES)
    return result


def identity_flags(manifest_path: str, limit: int) -> list[tuple[int, str, list]]:
    """``(keyframe, shot id, flags)`` of each keyframe the identity report flagged (a character missing or doubled, a
    face nobody in the shot: what the storyboard panel marks), from the project's manifest; the panel is not there
    when the demo runs from a terminal.

    The manifest is read with the pack's bounded JSON object reader (``text_files.read_json_object``, at most
    ``limit`` bytes: the project's ``MAX_MANIFEST_BYTES``). The list is an extra after a finished run, so a manifest
    that is missing, damaged or of another shape, and entries of another shape, give no flags rather than an error;
    before, ``json.load`` read it whole and one nested too deeply or with a list where an object belongs ended the
    run that had made the movie with a traceback."""
    try:
        entries = core_module("text_files").read_json_object(manifest_path, limit).get("keyframes")
    except ValueError:  # missing, unreadable, too large, not JSON, nested too deeply, not an object
        return []
    out = []
    for key, entry in (entries.items() if isinstance(entries, dict) else ()):
        report = entry.get("identity") if isinstance(entry, dict) else None
        flags = report.get("flags") if isinstance(report, dict) else None
        if flags and isinstance(flags, list) and key.isascii() and key.isdigit() and len(key) <= 8:
            out.append((int(key), str(entry.get("shot", "?")), [str(flag) for flag in flags]))
    return sorted(out)


def failure_message(event: str, data: dict, prompt: dict) -> str:
    """What the demo prints when the run stops: the queue command's wording (``queue.messages``), naming the node."""
    if event == "execution_interrupted":
        node = data.get("node_id")
        return f"the run was interrupted in node {node} ({data.get('node_type') or prompt.get(str(node), {}).get('class_type', '?')})"
    messages = importlib.import_module(f"{_pack_module()}.moviedreamer_core.queue.messages")
    return messages.format_execution_error(data, prompt)


def main(argv=None) -> int:
    result = run(parse_args(argv))
    print(f"movie:      {result['movie']}\nstoryboard: {result['storyboard']}\n"
          f"({result['seconds']:.1f} s, {result['loading']:.1f} s of it loading ComfyUI and the pack; "
          f"{result['threads']} thread{'s' * (result['threads'] > 1)})")
    flagged = result.get("flagged") or []
    if flagged:
        print(f"identity report: {len(flagged)} keyframe{'s' * (len(flagged) > 1)} flagged", file=sys.stderr)
        for k, shot, flags in flagged[:10]:
            print(f"  keyframe {k} (shot {shot}): {'; '.join(flags)}", file=sys.stderr)
        if len(flagged) > 10:
            print(f"  ... and {len(flagged) - 10} more (manifest.json, keyframes[].identity)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
