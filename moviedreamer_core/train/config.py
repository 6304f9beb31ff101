"""A training run's configuration: a YAML file (plus ``key=value`` overrides) read into dataclasses.

Every key is checked: an unknown or misspelt key, or a value of the wrong type, stops the run before any work
with the key's full path (``train.stepz: unknown key; did you mean 'steps'?``). The ``planner`` section holds
a preset name and ``PlannerConfig`` fields (checked against that dataclass), or ``init_from_llama``, a local
transformers LLaMA folder whose sizes and weights the backbone takes (the paper's 7B setting).

``train.batch_size`` is the *global* batch (stories per optimiser step, summed over processes and
gradient-accumulation micro-steps), so one YAML file means the same optimisation on one CPU or 64 GPUs;
each process runs ``batch_size / (processes * gradient_accumulation_steps)`` stories per micro-step.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from ..argument_types import SEED_MAX
from ..text_files import TextFileError, read_text_file
from ..planner.config import PlannerConfig
from ..spaces import SPACE_KEYS

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-5`` as the number it is. PyYAML follows YAML 1.1, where a float needs a dot
    (``1.0e-5``), so ``lr: 1e-4`` in a config file or ``train.lr=1e-5`` on the command line was the text "1e-5" and
    refused as "expected float" (an audit); YAML 1.2 and every other reader take it as a float."""


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


def _yaml(text: str):
    return yaml.load(text, Loader=_ConfigLoader)


class ConfigError(ValueError):
    """A configuration problem, naming the key (``section.key``) or file at fault."""


@dataclass
class PlannerSection:
    preset: str = "tiny"  # tiny | small | paper (planner/config.py); ignored for the backbone sizes with init_from_llama
    init_from_llama: Optional[str] = None  # local transformers LLaMA folder (config.json + *.safetensors)
    fields: dict = field(default_factory=dict)  # PlannerConfig fields (any key of the section other than the two above)


@dataclass
class DataSection:
    path: str = ""  # dataset folder: index.json + movies/ (planner/train.py)
    val_movies: list = field(default_factory=list)  # held-out films, as listed in index.json
    val_fraction: float = 0.0  # or: this fraction of the films, chosen with the seed (when val_movies is empty)
    max_keyframes: int = 32  # longest training window, in keyframes
    cache: bool = True  # keep loaded movies in memory (off for datasets larger than RAM: each step reads its movies)


@dataclass
class FSDPSection:
    enabled: bool = False
    version: int = 1  # 1 (FullyShardedDataParallel) or 2 (fully_shard)
    sharding_strategy: str = "FULL_SHARD"  # FULL_SHARD | SHARD_GRAD_OP | HYBRID_SHARD | NO_SHARD (version 1)
    cpu_offload: bool = False
    state_dict_type: str = "SHARDED_STATE_DICT"  # how checkpoints are written (each rank its shard)
    cpu_ram_efficient_loading: bool = True  # only rank 0 materialises the initial weights; the others get them
    wrap: str = "LlamaDecoderLayer"  # module class wrapped as one FSDP unit


@dataclass
class TrainSection:
    steps: int = 1000
    batch_size: int = 16  # global: stories per optimiser step (all processes, all micro-steps)
    gradient_accumulation_steps: int = 1
    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0  # cosine decay to lr * min_lr_ratio
    grad_clip: float = 1.0
    seed: int = 0
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False  # recompute the LLaMA layers in backward (memory for compute)
    cpu: bool = False  # force the CPU (gloo between processes)
    threads: Optional[int] = None  # torch intra-op threads per process (None: leave as is)
    find_unused_parameters: bool = True  # DDP: the null/mask embeddings are unused in some batches
    fsdp: FSDPSection = field(default_factory=FSDPSection)


@dataclass
class EvalSection:
    every: int = 100  # steps between evaluations of the held-out films (0: only at the end)
    batch_size: int = 8  # windows per forward pass, per process
    baselines: bool = False  # also the no-history and no-script errors (the learning tests' baselines)


@dataclass
class CheckpointSection:
    every: int = 500  # steps between resumable checkpoints (0: none)
    keep: int = 2  # newest checkpoints kept (0: all)
    resume: str = "auto"  # auto (newest in output.dir, if any) | none | a checkpoint folder


@dataclass
class OutputSection:
    dir: str = "runs/planner"  # log.jsonl, checkpoints/
    planner: Optional[str] = None  # final planner file (default <dir>/planner.safetensors); e.g. models/moviedreamer/x.safetensors
    log_every: int = 10


@dataclass
class TrainConfig:
    planner: PlannerSection = field(default_factory=PlannerSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def planner_file(self) -> str:
        return self.output.planner or os.path.join(self.output.dir, "planner.safetensors")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        fields_ = d["planner"].pop("fields")
        d["planner"].update(fields_)
        return d

    def planner_overrides(self, spaces: dict) -> dict:
        """``PlannerConfig`` fields for this run: the section's fields with the dataset's spaces."""
        return {**self.planner.fields, **spaces}


# ------------------------------------------------------------------------------------------- reading


def _type_ok(value: Any, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (list, dict, str, bool):
        return isinstance(value, tp)
    return True


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the configuration'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"{path}: unknown key{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, path)
        elif not _type_ok(value, tp):
            raise ConfigError(f"{path}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
        else:
            kwargs[key] = float(value) if tp is float else value
    return cls(**kwargs)


def _planner_section(data: Any) -> PlannerSection:
    if data is None:
        return PlannerSection()
    if not isinstance(data, dict):
        raise ConfigError("planner: expected a mapping")
    data = dict(data)
    section = _build(PlannerSection, {k: data.pop(k) for k in ("preset", "init_from_llama") if k in data}, "planner")
    known = {f.name for f in dataclasses.fields(PlannerConfig)} - {*SPACE_KEYS, "version"}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (PlannerConfig fields, preset or init_from_llama)"
            raise ConfigError(f"planner.{key}: unknown key{hint}")
    section.fields = data
    return section


def parse_overrides(items: list[str]) -> dict:
    """``["train.steps=100", "planner.dropout=0.2"]`` to a nested dict (values read as YAML scalars)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r}: the key needs its section, e.g. train.steps=100")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _yaml(raw) if raw.strip() else None
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


#: The largest config file read (a config is a few dozen lines).
MAX_CONFIG_BYTES = 2**20


def resolve_config_path(name: str) -> str:
    """A YAML path, or the name of a shipped config (``tiny``, ``small``, ``paper``)."""
    if os.path.isfile(name):
        return name
    shipped = os.path.join(CONFIG_DIR, name if name.endswith(".yaml") else name + ".yaml")
    if os.path.isfile(shipped):
        return shipped
    names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
    raise ConfigError(f"config {name!r}: no such file, and not a shipped config ({', '.join(names)})")


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data or {})
    planner = _planner_section(data.pop("planner", None))
    cfg = _build(TrainConfig, data, "")
    cfg.planner = planner
    validate(cfg)
    return cfg


def load_config(path: str, overrides: Optional[list[str]] = None) -> TrainConfig:
    path = resolve_config_path(path)
    try:
        data = _yaml(read_text_file(path, MAX_CONFIG_BYTES)) or {}
    except TextFileError as e:
        raise ConfigError(f"{path} {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections (planner, data, train, ...), got "
                          f"{type(data).__name__}")
    given = parse_overrides(overrides or [])
    try:
        return config_from_dict(_merge(data, given))
    except ConfigError as e:
        # a value given on the command line is named as the override it came from, not as the file's
        key = str(e).split(":", 1)[0].split(" ", 1)[0]
        said = next((item for item in overrides or [] if (item.split("=", 1)[0].strip() + ".").startswith(key + ".")), None)
        raise ConfigError(f"override {said}: {e}" if said else f"{os.path.basename(path)}: {e}") from None


#: Spaces standing in for the dataset's while the planner's fields are checked (``validate``): sizes only.
PLACEHOLDER_SPACES = {"text_space": {"encoder": "?", "dim": 768}, "identity_space": {"encoder": "?", "dim": 512},
                       "token_space": {"source": "?", "K": 2, "D": 1024}}


def validate(cfg: TrainConfig) -> None:
    t = cfg.train
    checks = [
        (t.steps > 0, "train.steps must be positive"),
        (t.batch_size > 0, "train.batch_size must be positive"),
        (t.gradient_accumulation_steps > 0, "train.gradient_accumulation_steps must be positive"),
        (t.batch_size % t.gradient_accumulation_steps == 0,
         f"train.batch_size ({t.batch_size}) must be a multiple of train.gradient_accumulation_steps "
         f"({t.gradient_accumulation_steps})"),
        (t.mixed_precision in ("no", "bf16", "fp16"), f"train.mixed_precision must be no, bf16 or fp16, got {t.mixed_precision!r}"),
        (len(t.betas) == 2, "train.betas must be two numbers"),
        (0 <= cfg.data.val_fraction < 1, "data.val_fraction must be in [0, 1)"),
        (cfg.data.max_keyframes > 0, "data.max_keyframes must be positive"),
        (t.fsdp.version in (1, 2), "train.fsdp.version must be 1 or 2"),
        (cfg.eval.every >= 0 and cfg.checkpoint.every >= 0 and cfg.output.log_every >= 0, "every-N settings must be >= 0"),
        (cfg.eval.batch_size > 0, f"eval.batch_size must be positive, got {cfg.eval.batch_size}"),
        (cfg.planner.preset in ("tiny", "small", "paper"), f"planner.preset must be tiny, small or paper, got {cfg.planner.preset!r}"),
        (0 < t.lr < math.inf, f"train.lr must be a positive number, got {t.lr!r}"),
        (isinstance(t.seed, int) and 0 <= t.seed <= SEED_MAX, f"train.seed must be a whole number from 0 to {SEED_MAX}, "
         f"got {t.seed!r}"),
        (0 <= t.weight_decay < math.inf and t.warmup_steps >= 0 and 0 <= t.min_lr_ratio <= 1,
         "train.weight_decay and train.warmup_steps must be >= 0, train.min_lr_ratio in [0, 1]"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    if not cfg.planner.init_from_llama:  # the planner's own fields, checked as the training will build them
        from ..planner.config import preset

        try:
            preset(cfg.planner.preset, **cfg.planner_overrides(PLACEHOLDER_SPACES))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"planner: {e}") from None


def micro_batch_size(cfg: TrainConfig, num_processes: int) -> int:
    """Stories per process per micro-step; the global batch must split evenly."""
    t = cfg.train
    denom = num_processes * t.gradient_accumulation_steps
    if t.batch_size % denom:
        raise ConfigError(f"train.batch_size ({t.batch_size}) must be a multiple of processes x gradient_accumulation_steps "
                          f"({num_processes} x {t.gradient_accumulation_steps} = {denom})")
    return t.batch_size // denom
