"""ComfyUI imported as a library (no server), for the pack's command-line programs in ``cli/``.

The training and demo scripts run the host's own code (model classes, samplers, executor) outside a running
ComfyUI: they set the host up the way ``main.py`` does (its folders, its ``extra_model_paths.yaml``, its model
management), then import this pack as a package under a fixed name, so its relative imports work whatever its
folder is called. Nothing here imports the host at module level: the scripts call ``import_host`` first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_MODULE = "moviedreamer_pack"


def is_comfyui(folder) -> bool:
    """Whether ``folder`` is a ComfyUI checkout (it holds ``comfy/model_management.py``)."""
    return (Path(folder).expanduser() / "comfy" / "model_management.py").is_file()


def comfyui_folder(given: str | None) -> Path:
    """The ComfyUI folder: ``given`` (``--comfyui``), else ``$COMFYUI_PATH``, else the folder this pack sits in
    (``ComfyUI/custom_nodes/<pack>``). A folder named by the user that is not a ComfyUI folder is refused, never
    passed over for another ComfyUI (a machine with two would run the wrong one without a word)."""
    for name, candidate in (("--comfyui", given), ("COMFYUI_PATH", os.environ.get("COMFYUI_PATH", "").strip() or None)):
        if candidate:
            if not is_comfyui(candidate):
                raise SystemExit(f"{name} {candidate}: not a ComfyUI folder (it has no comfy/model_management.py)")
            return Path(candidate).expanduser().resolve()
    if is_comfyui(PACK_DIR.parents[1]):
        return PACK_DIR.parents[1].resolve()
    raise SystemExit("ComfyUI not found: pass --comfyui <folder>, set COMFYUI_PATH, or put this pack in ComfyUI/custom_nodes/")


def import_host(comfyui: Path, cpu: bool = False):
    """The host's modules, set up as ``main.py`` sets them up (folders, extra model paths); returns folder_paths."""
    if not is_comfyui(comfyui):
        raise SystemExit(f"{comfyui} is not a ComfyUI folder (set --comfyui or COMFYUI_PATH)")
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))
    saved, sys.argv = sys.argv, [sys.argv[0]]
    try:
        import comfy.cli_args
        import torch

        # a CUDA build of torch on a machine without an NVIDIA driver: the host would fail to start
        mps = getattr(torch.backends, "mps", None)
        if cpu or not (torch.cuda.is_available() or (mps is not None and mps.is_available())):
            comfy.cli_args.args.cpu = True
        import folder_paths
        import utils.extra_config

        extra = comfyui / "extra_model_paths.yaml"
        if extra.is_file():
            utils.extra_config.load_extra_path_config(str(extra))
    finally:
        sys.argv = saved
    return folder_paths


def core_module(name: str):
    """``moviedreamer_core/<name>.py`` read from its file, before ComfyUI and the pack are importable (what the programs
    need while parsing their arguments: ``argument_types``, ``threads``). Only modules without relative imports."""
    key = f"_moviedreamer_core_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, PACK_DIR / "moviedreamer_core" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # before it runs, as import does: a dataclass looks its module up while it is made
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]


def import_pack():
    """This pack as a package (its folder name need not be a valid module name); returns its ``nodes``."""
    if PACK_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_MODULE, PACK_DIR / "__init__.py",
                                                      submodule_search_locations=[str(PACK_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_MODULE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACK_MODULE}.nodes")
