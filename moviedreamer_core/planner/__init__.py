"""The autoregressive keyframe planner (MovieDreamer paper section 3.3) and its training-free prior.

``generate_storyboard(planner, embeds, seed=..., ...)`` plans a ``Storyboard`` with either a learned
``KeyframePlanner`` (``load_planner(path)``) or the ``ZeroShotPrior``.
"""

from .checkpoint import load_planner, read_planner_config, save_planner
from .config import PlannerConfig, preset
from .generate import generate_storyboard, plan_given_history, plan_tokens
from .inputs import Story, story_from_embeds
from .model import KeyframePlanner
from .zero_shot import ZeroShotPrior

__all__ = ["KeyframePlanner", "PlannerConfig", "preset", "load_planner", "read_planner_config", "save_planner",
           "generate_storyboard", "plan_tokens", "plan_given_history", "Story", "story_from_embeds", "ZeroShotPrior"]
