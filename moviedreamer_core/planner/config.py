"""The planner's configuration: every size and switch, serialisable with the weights.

Following the transformers library's habit, a checkpoint carries its whole configuration (as JSON in the
safetensors metadata), so a planner file is self-describing: the loader rebuilds the exact model and checks
the text, identity and token spaces it was trained on against what the script provides.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

PLANNER_FORMAT_VERSION = 1

#: Per-keyframe script fields a planner can read beyond its text segments and identities (``PlannerConfig.inputs``).
#: ``camera``: the shot's camera (``script.Camera``), a learned embedding added to the keyframe's BOI element.
#: ``mentions``: what the action sentence says of each on-screen character (``script.mentions``), projected and added
#: to that character's identity element of the keyframe.
KNOWN_INPUTS = ("camera", "mentions")


#: Fields that count something (sizes, lengths, components): whole numbers of at least 1.
_POSITIVE_SIZES = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_positions",
                   "max_characters", "text_segments", "mixture_components")
#: The largest value each size may take: far above any planner trained (the paper's is a 7B LLaMA: hidden 4096, 32
#: layers), and low enough that a file claiming them is refused within a second (the model is built from its
#: configuration, on the meta device, before its tensors are compared: 20000 layers took 40 s and 1.7 GB).
_SIZE_LIMITS = {"hidden_size": 1 << 16, "num_layers": 1024, "num_heads": 1024, "num_kv_heads": 1024,
                "intermediate_size": 1 << 18, "max_positions": 1 << 24, "max_characters": 1024, "text_segments": 64,
                "mixture_components": 4096, "scene_bank": 1 << 20, "empty_bank": 1 << 20}
#: Fields that are shares (probabilities, ratios) or spreads, with the range each may take.
_NUMBER_RANGES = (("dropout", 0.0, 1.0), ("attention_dropout", 0.0, 1.0), ("history_mask_ratio", 0.0, 1.0),
                  ("scheduled_sampling", 0.0, 1.0), ("condition_dropout", 0.0, 1.0), ("history_noise", 0.0, 1e3),
                  ("text_noise", 0.0, 1e3), ("snap_keep", 0.0, 1.0), ("identity_noise", 0.0, 1e3), ("min_sigma", 1e-9, 1e3),
                  ("rope_theta", 1e-9, 1e12), ("nll_weight", 0.0, 1e6), ("l2_weight", 0.0, 1e6), ("cosine_weight", 0.0, 1e6))


def _described(value) -> str:
    """A value of a config as a message shows it, in bounded time: a YAML alias can make a small file's list hold
    millions of items, so a list or an object is described by its size, not written out."""
    if isinstance(value, (list, tuple, dict)):
        return f"{type(value).__name__} of {len(value):,} items"
    return repr(value if not isinstance(value, str) else value[:100])[:100]


@dataclass
class PlannerConfig:
    # --- spaces (what the planner reads and predicts); dicts as in spaces.EmbeddingSpace/TokenSpace.to_dict
    text_space: dict = field(default_factory=lambda: {"encoder": "unknown", "dim": 768})
    identity_space: dict = field(default_factory=lambda: {"encoder": "unknown", "dim": 128})
    token_space: dict = field(default_factory=lambda: {"source": "unknown", "K": 2, "D": 1024})

    # --- transformer backbone (a LLaMA decoder fed with inputs_embeds; paper: 7B LLaMA)
    hidden_size: int = 512
    num_layers: int = 8
    num_heads: int = 8
    num_kv_heads: int = 8
    intermediate_size: int = 1376
    max_positions: int = 8192
    rope_theta: float = 10000.0

    # --- sequence
    max_characters: int = 16  # slot embeddings binding identities to keyframes
    text_segments: int = 3  # action, scene, style per keyframe
    # per-keyframe script fields the planner reads (``KNOWN_INPUTS``); a file saved before this field existed
    # has none in its metadata and loads with ``[]`` (reads no camera, as it was trained): checkpoint.read_planner_config
    inputs: list = field(default_factory=lambda: ["camera", "mentions"])
    # every training film had one style: the planner keeps its embedding (tensor ``fixed_style``) and plans every
    # script in it, as it was trained, instead of reading a style it never saw (``KeyframePlanner.planning_story``)
    fixed_style: bool = False
    # the camera values the training films state (``inputs.CAMERAS`` names), filled by the trainers when the planner
    # reads the camera and the films state only some values: a script's other values are planned as the nearest of
    # these (``inputs.nearest_camera``), not through embedding rows that never trained. Empty: every value
    cameras: list = field(default_factory=list)
    # plan each script's scene sentence as the nearest of the training films' distinct scene sentences (tensor
    # ``scene_bank``, ``scene_bank`` rows, filled by the trainers): for closed worlds, where a new phrasing of a trained
    # place was planned as another place (``planner/scene_bank.py``). ``scene_bank`` 0: nothing kept (off)
    snap_scenes: bool = False
    scene_bank: int = 0
    snap_keep: float = 0.5  # share of a new scene sentence's own difference from its nearest training one kept
    # plan the action of each keyframe with nobody on screen as the one of the training films' distinct actions of
    # such keyframes nearest its action and scene (tensor ``empty_bank``, ``empty_bank`` rows, filled by the trainers):
    # for closed worlds, whose empty shots all say so in a few words, where a user's "Morning comes." was drawn with a
    # figure (``planner/scene_bank.py``, ``snap_empty_actions``). ``empty_bank`` 0: nothing kept (off)
    snap_empty: bool = False
    empty_bank: int = 0

    # --- output head: Gaussian mixture per visual token (GIVT-style, diagonal covariance)
    mixture_components: int = 8
    min_sigma: float = 1e-3

    # --- losses (our reading of the paper: mixture NLL plus auxiliary L2-type terms on the mixture mean)
    nll_weight: float = 1.0
    l2_weight: float = 1.0
    cosine_weight: float = 0.1

    # --- training-only regularisers (paper section 3.3, "anti-overfitting")
    dropout: float = 0.5  # on input embeddings and before the head
    attention_dropout: float = 0.0
    history_mask_ratio: float = 0.15  # visual-token inputs replaced by a learned mask embedding
    # std of Gaussian noise on visual-token inputs (normalised space), so the planner reads earlier keyframes' state
    # from tokens as imperfect as its own predictions are at generation (exposure bias); 0: off
    history_noise: float = 0.0
    # share of keyframes whose token inputs are the planner's own teacher-forced predictions (scheduled sampling,
    # model._own_predictions); 0: off
    scheduled_sampling: float = 0.0
    # std of Gaussian noise on the keyframe text embeddings (action, scene, style), relative to each embedding's RMS,
    # so the planner reads a sentence's meaning rather than the exact vectors of the few training phrasings; 0: off
    text_noise: float = 0.0
    identity_randomisation: bool = True  # identity drawn from another photo of the character, plus noise
    identity_noise: float = 0.05
    condition_dropout: float = 0.1  # whole script replaced by learned null embeddings (for CFG)
    slot_permutation: bool = True  # random character->slot binding per story, so slots carry no names

    # --- bookkeeping
    version: int = PLANNER_FORMAT_VERSION
    name: str = "moviedreamer-planner"

    def __post_init__(self):
        if not isinstance(self.inputs, (list, tuple)) or any(not isinstance(x, str) for x in self.inputs):
            raise ValueError(f"planner config inputs must be a list of input names, got {_described(self.inputs)}")
        unknown = [x[:40] for x in self.inputs if x not in KNOWN_INPUTS]
        if unknown:
            raise ValueError(f"the planner reads input(s) {unknown[:5]} that this pack does not know (known: "
                             f"{list(KNOWN_INPUTS)}); a planner file that needs them: update ComfyUI-MovieDreamer")
        self._check_numbers()
        from .inputs import CAMERAS

        if (not isinstance(self.cameras, (list, tuple)) or len(self.cameras) > len(CAMERAS)
                or any(not isinstance(c, str) or c not in CAMERAS for c in self.cameras)):
            raise ValueError(f"planner config cameras must be a list of camera values ({', '.join(CAMERAS)}), got "
                             f"{_described(self.cameras)}")
        self.cameras = list(self.cameras)

    def _check_numbers(self) -> None:
        """Sizes positive, shares within 0..1, spreads not negative: a bad override (``planner.hidden_size=-1``) or
        file is refused here, by the field's name, not deep inside torch."""
        from ..spaces import SPACE_KEYS, check_declared_spaces

        for name in _POSITIVE_SIZES:
            value, high = getattr(self, name), _SIZE_LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"planner config {name} must be a whole number from 1 to {high:,}, got {str(value)[:100]}")
        try:
            check_declared_spaces({key: getattr(self, key) for key in SPACE_KEYS})
        except ValueError as e:
            raise ValueError(f"planner config {e}") from None
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"planner config hidden_size ({self.hidden_size}) must be a multiple of num_heads "
                             f"({self.num_heads}), and num_heads of num_kv_heads ({self.num_kv_heads})")
        for f in fields(self):  # a switch is true or false: a --config file's "snap_empty": "false" is text, which
            value = getattr(self, f.name)  # Python reads as true (the quick trainer kept the bank it was told not to)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"planner config {f.name} must be true or false, got {_described(value)}")
        for name in ("scene_bank", "empty_bank"):  # rows of a kept bank; 0: none kept
            value, high = getattr(self, name), _SIZE_LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise ValueError(f"planner config {name} must be a whole number from 0 to {high:,}, got {str(value)[:100]}")
        for name, low, high in _NUMBER_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"planner config {name} must be a number from {low:g} to {high:g}, got {value!r}")

    @property
    def K(self) -> int:
        return int(self.token_space["K"])

    @property
    def D(self) -> int:
        return int(self.token_space["D"])

    @property
    def text_dim(self) -> int:
        return int(self.text_space["dim"])

    @property
    def identity_dim(self) -> int:
        return int(self.identity_space["dim"])

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "PlannerConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a planner config must be an object of fields, got {_described(d)}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown planner config fields: {[str(k)[:40] for k in sorted(unknown, key=str)[:10]]}")
        version = d.get("version", PLANNER_FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"planner config version must be a whole number, got {_described(version)}")
        if version > PLANNER_FORMAT_VERSION:
            raise ValueError(f"planner format version {d['version']} is newer than this pack understands "
                             f"({PLANNER_FORMAT_VERSION}); update ComfyUI-MovieDreamer")
        d = dict(d)
        if "inputs" not in d:
            return cls(**d)  # the default inputs (a planner *file* without the field: see checkpoint.read_planner_config)
        if not isinstance(d["inputs"], (list, tuple)):
            raise ValueError(f"planner config 'inputs' must be a list of input names, got {_described(d['inputs'])}")
        d["inputs"] = [str(x) for x in d["inputs"]]
        return cls(**d)  # __post_init__ refuses unknown inputs

    def reads(self, name: str) -> bool:
        """Whether the planner reads the per-keyframe script field ``name`` (one of ``KNOWN_INPUTS``)."""
        return name in self.inputs


def preset(name: str, **overrides) -> PlannerConfig:
    """Named sizes. ``tiny``: CPU tests and toy worlds; ``small``: about 100 M parameters on one GPU;
    ``paper``: the 7B LLaMA layout of the paper (initialise from a local LLaMA checkpoint)."""
    presets = {
        "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=128,
                     mixture_components=4, max_positions=4096),
        "small": dict(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=12, intermediate_size=2048),
        "paper": dict(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32, intermediate_size=11008,
                      max_positions=4096),
    }
    if name not in presets:
        raise ValueError(f"unknown planner preset {name!r} (choices: {', '.join(presets)})")
    return PlannerConfig(**{**presets[name], **overrides})
