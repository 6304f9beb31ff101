"""ComfyUI adapters for MovieDreamer: node schemas, host calls, type conversion and progress.

Everything here is thin: the method is in ``moviedreamer_core``. Files ending in ``_node.py``/``_nodes.py``
hold graph nodes; ``host.py`` owns every call into the host's model management, folders, progress,
interruption and server; the other files are the helpers those nodes share (attention patching, I2V
backends, text and face encoders, the toy UNet in the host's classes). Command-line programs live in
``cli/``, test-only nodes in ``tests/host/tiny_nodes.py``.
"""

from __future__ import annotations

import os

from comfy_api.latest import ComfyExtension, io

from . import host


#: Node classes by module. A module that cannot be imported (a broken optional dependency, a host API that
#: moved) costs only its own nodes, with the reason in the log, not the whole pack.
NODE_MODULES = {
    "script_encode_node": ["ScriptEncode"],
    "script_info_node": ["MovieDreamerScriptInfo"],
    "planner_nodes": ["MovieDreamerPlannerLoader", "ARKeyframePlanner", "MovieDreamerStoryboardInfo"],
    "render_nodes": ["MovieDreamerRendererLoader", "IdentityDiffusionRender", "MovieDreamerKeyframeEncode"],
    "animate_nodes": ["ShotAnimate"],
    "gather_node": ["MovieDreamerGather"],
    "renderer_train_node": ["MovieDreamerTrainRenderer"],
    "storyboard_sheet_node": ["MovieDreamerStoryboardSheet"],
    "toycinema_nodes": ["MovieDreamerToyCinemaLoader"],
}


def load_node_classes(modules: dict) -> tuple[list, dict]:
    """``(node classes, {module: error})`` for ``{module name in this package: [class names]}``."""
    import importlib
    import logging

    classes, failed = [], {}
    for module_name, names in modules.items():
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
            classes += [getattr(module, name) for name in names]
        except Exception as e:  # noqa: BLE001  (reported, and the other nodes still load)
            failed[module_name] = f"{type(e).__name__}: {e}"
            logging.error("MovieDreamer: the nodes %s are not available: %s: %s", ", ".join(names), type(e).__name__, e)
    return classes, failed


class MovieDreamerExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        node_list, _ = load_node_classes(NODE_MODULES)
        if os.environ.get("MOVIEDREAMER_TEST_NODES") == "1":  # tiny host models for tests, never for users
            from ..tests.host.tiny_nodes import TEST_NODES

            node_list += TEST_NODES
        return node_list


async def comfy_entrypoint() -> MovieDreamerExtension:
    # This host version never calls ComfyExtension.on_load, so the models folder is registered here,
    # once, when the host loads the pack (after it has read extra_model_paths.yaml).
    host.register_model_folder()
    try:  # the shipped toy renderer and planner join models/moviedreamer (after the user's folders)
        from .toycinema_models import register_toy_models

        register_toy_models()
    except Exception as e:  # noqa: BLE001  (the toy models are optional; the rest of the pack still loads)
        import logging

        logging.error("MovieDreamer: the toy cinema models are not available: %s: %s", type(e).__name__, e)
    from . import distributed_prompt, routes

    routes.register()
    host.add_prompt_step(distributed_prompt.on_prompt)
    return MovieDreamerExtension()
