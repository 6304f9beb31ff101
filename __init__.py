"""ComfyUI-MovieDreamer: minute-long movies with consistent characters from a script.

The host imports this folder as a package and calls ``comfy_entrypoint`` (V3 API). The method lives in
``moviedreamer_core`` (no host imports); the ComfyUI adapters live in ``nodes``.

pytest imports this file while collecting ``tests/`` (as a bare module, or as a package named after the
checkout folder), usually without a host; the registration therefore runs only inside a package and only
where the host's ``comfy_api`` can be imported.
"""

import importlib.util

WEB_DIRECTORY = "js"

if __package__ and importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: F401  (the host looks this name up)

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
