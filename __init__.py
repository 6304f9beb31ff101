"""ComfyUI-MovieDreamer: minute-long movies with consistent characters from a script.

The host imports this folder as a package and calls ``comfy_entrypoint`` (V3 API). The method lives in
``moviedreamer_core`` (no host imports); the ComfyUI adapters live in ``nodes``.

pytest imports this file while collecting ``tests/`` (as a bare module, or as a package named after the
checkout folder), usually without a host; the registration therefore runs only inside a package and only
in a running host: one whose model management is already imported, as the host's ``nodes.py`` imports it before
it loads any custom node. Where the host's folder is merely importable (a worker process spawned by the dataset
builder, which imports its encoder factory's module through this package; a script with ComfyUI on its path), the
nodes are not imported, because importing them starts the host's model management, which without the host's
command line looks for a GPU (on a machine without one: "Found no NVIDIA driver").
"""

import sys

WEB_DIRECTORY = "js"

if __package__ and "comfy.model_management" in sys.modules:
    from .nodes import comfy_entrypoint  # noqa: F401  (the host looks this name up)

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
