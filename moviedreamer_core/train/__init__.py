"""Planner training at scale: ``python -m moviedreamer_core.train planner --config <yaml> [section.key=value ...]``.

One code path for the CPU, one GPU, DDP and FSDP (accelerate), exact resume from periodic checkpoints,
held-out evaluation, and the final planner written in the pack's own format (planner/checkpoint.py), so
``MovieDreamerPlannerLoader`` loads it. Files: ``config.py`` (YAML to checked dataclasses), ``data.py``
(dataset split and the stateless sharded sampler), ``loop.py`` (the loop), ``state.py`` (checkpoints),
``evaluation.py`` (held-out errors), ``configs/`` (tiny, small, paper).
"""

from .config import ConfigError, TrainConfig, load_config
from .loop import run

__all__ = ["ConfigError", "TrainConfig", "load_config", "run"]
