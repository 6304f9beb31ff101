"""ComfyUI adapters for MovieDreamer: node schemas, host calls, type conversion and progress.

Everything here is thin: the method is in ``moviedreamer_core``. ``host.py`` owns every call into the
host's model management, folders, progress and interruption.
"""

from __future__ import annotations

import os

from comfy_api.latest import ComfyExtension, io

from . import host


class MovieDreamerExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .animate_nodes import ShotAnimate
        from .planner_nodes import ARKeyframePlanner, MovieDreamerPlannerLoader, MovieDreamerStoryboardInfo
        from .render_nodes import IdentityDiffusionRender, MovieDreamerKeyframeEncode, MovieDreamerRendererLoader
        from .renderer_train_node import MovieDreamerTrainRenderer
        from .script_encode import ScriptEncode
        from .script_info import MovieDreamerScriptInfo

        node_list = [ScriptEncode, MovieDreamerScriptInfo, MovieDreamerPlannerLoader, ARKeyframePlanner,
                     MovieDreamerStoryboardInfo, MovieDreamerRendererLoader, IdentityDiffusionRender,
                     MovieDreamerKeyframeEncode, ShotAnimate, MovieDreamerTrainRenderer]
        if os.environ.get("MOVIEDREAMER_TEST_NODES") == "1":  # tiny host models for tests, never for users
            from .testing import TEST_NODES

            node_list += TEST_NODES
        return node_list


async def comfy_entrypoint() -> MovieDreamerExtension:
    # This host version never calls ComfyExtension.on_load, so the models folder is registered here,
    # once, when the host loads the pack (after it has read extra_model_paths.yaml).
    host.register_model_folder()
    from . import routes

    routes.register()
    return MovieDreamerExtension()
