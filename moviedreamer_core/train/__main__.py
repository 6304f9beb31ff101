"""Command line: ``python -m moviedreamer_core.train planner --config <yaml or tiny|small|paper> [section.key=value ...]``.

Launch it the same way on every setup: plainly (CPU or one GPU), or under ``accelerate launch`` / ``torchrun``
for several processes (DDP, or FSDP when the config's ``train.fsdp.enabled`` is true). ``--dry-run`` checks the
configuration and prints the model size and a memory estimate without training.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..argument_types import whole_number
from ..files import output_file_problem
from ..planner.movie_checks import MovieFileError
from .config import PLACEHOLDER_SPACES, ConfigError, load_config, micro_batch_size


def describe(cfg, num_processes: int = 1) -> str:
    """Parameter count (model built on the meta device) and the AdamW training-state memory it implies."""
    import torch

    from ..planner.config import preset
    from ..planner.model import KeyframePlanner

    overrides = cfg.planner_overrides(PLACEHOLDER_SPACES)
    folder, note = cfg.planner.init_from_llama, ""
    if folder and os.path.isfile(os.path.join(folder, "config.json")):
        pcfg = KeyframePlanner.config_from_llama(folder, **overrides)
    else:
        pcfg = preset(cfg.planner.preset, **overrides)
        note = f" [{folder} not found: the {cfg.planner.preset} preset's layout]" if folder else ""
    with torch.device("meta"):
        n = sum(p.numel() for p in KeyframePlanner(pcfg).parameters())
    shards = num_processes if cfg.train.fsdp.enabled else 1
    state = 16 * n / shards  # fp32 weights 4 + grads 4 + AdamW moments 8 bytes per parameter
    return (f"{n / 1e6:.1f} M parameters (text 768, identity 512, tokens 2x1024); weights+grads+AdamW "
            f"16 B/param = {state / 2**30:.2f} GiB per process ({'sharded over ' + str(shards) if shards > 1 else 'replicated'}), "
            f"plus activations; micro-batch {micro_batch_size(cfg, num_processes)} per process{note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moviedreamer_core.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("planner", help="train the keyframe planner")
    p.add_argument("--config", required=True, help="a YAML file, or a shipped config: tiny, small, paper")
    p.add_argument("--dry-run", action="store_true", help="check the configuration, print size and memory, do not train")
    p.add_argument("--processes", type=whole_number(1), default=1, help="with --dry-run: the number of processes to plan for")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=100 data.path=my_dataset")
    args = parser.parse_args(argv)
    cfg = None
    try:
        cfg = load_config(args.config, args.overrides)
        problem = output_file_problem(cfg.planner_file)
        if problem:  # found before the training, not after its last step
            raise ConfigError(f"output.planner: {problem}")
        if args.dry_run:
            print(describe(cfg, args.processes))
            return 0
        from .loop import run

        run(cfg)
    except (ConfigError, MovieFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a traceback said nothing of what was kept (an audit)
        print(interrupted_message(cfg), file=sys.stderr)
        return 130
    return 0


def interrupted_message(cfg) -> str:
    """What a Ctrl-C kept: the newest checkpoint a rerun of the same command resumes from, or none."""
    from .state import find_resume

    try:
        newest = find_resume(cfg) if cfg is not None and cfg.checkpoint.resume == "auto" else None
    except (ConfigError, OSError, ValueError):
        newest = None
    if newest:
        return (f"stopped (Ctrl-C): run the same command again to resume from {newest} (the steps after it are made "
                "again)")
    return "stopped (Ctrl-C) before the first checkpoint: run the same command again to start afresh"


if __name__ == "__main__":
    raise SystemExit(main())
