"""ComfyUI-MovieDreamer: minute-long movies with consistent characters from a script.

The host imports this folder as a package and calls ``comfy_entrypoint`` (V3 API). The method lives in
``moviedreamer_core`` (no host imports); the ComfyUI adapters live in ``nodes``.

pytest imports this file as a bare module while collecting ``tests/`` (no parent package, no host), so the
registration is guarded by ``__package__``.
"""

WEB_DIRECTORY = "js"

if __package__:
    from .nodes import comfy_entrypoint  # noqa: F401  (the host looks this name up)

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
