"""``MD_STORYBOARD``: the planned visual tokens of every keyframe, with their lineage.

The planner's output and the renderer's input. Besides the tokens ``[n_keyframes, K, D]`` it records the
token space they live in (the renderer refuses another), which shot each keyframe belongs to, the seeds
(a base seed and one derived seed per keyframe, so one keyframe can be re-planned or re-rendered alone),
which planner made it, and the hashes of the script and embeddings it came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch

from .spaces import TokenSpace

STORYBOARD_FORMAT_VERSION = 1


def derive_seed(base: int, index: int, purpose: str = "plan") -> int:
    """A per-keyframe seed from the base seed: stable across runs, machines and Python versions."""
    digest = hashlib.sha256(f"{purpose}:{int(base)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class Storyboard:
    tokens: torch.Tensor  # [n_keyframes, K, D], float32, CPU
    token_space: TokenSpace
    keyframe_shot: tuple  # shot index per keyframe
    shot_ids: tuple  # shot id per keyframe
    planner_name: str
    seed: int
    keyframe_seeds: tuple
    script_hash: str
    content_hash: str
    params: dict = field(default_factory=dict)  # temperature, guidance, window, ...

    @property
    def n_keyframes(self) -> int:
        return int(self.tokens.shape[0])

    def metadata(self) -> dict:
        return {
            "format": STORYBOARD_FORMAT_VERSION, "token_space": self.token_space.to_dict(),
            "keyframe_shot": list(self.keyframe_shot), "shot_ids": list(self.shot_ids),
            "planner_name": self.planner_name, "seed": self.seed, "keyframe_seeds": [str(s) for s in self.keyframe_seeds],
            "script_hash": self.script_hash, "content_hash": self.content_hash, "params": self.params,
        }

    def save(self, path: str) -> None:
        from safetensors.torch import save_file

        save_file({"tokens": self.tokens.contiguous().float()}, path, metadata={"moviedreamer_storyboard": json.dumps(self.metadata())})

    @classmethod
    def load(cls, path: str) -> "Storyboard":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["moviedreamer_storyboard"])
            tokens = f.get_tensor("tokens")
        return cls(
            tokens=tokens, token_space=TokenSpace.from_dict(meta["token_space"]), keyframe_shot=tuple(meta["keyframe_shot"]),
            shot_ids=tuple(meta["shot_ids"]), planner_name=meta["planner_name"], seed=int(meta["seed"]),
            keyframe_seeds=tuple(int(s) for s in meta["keyframe_seeds"]), script_hash=meta["script_hash"],
            content_hash=meta["content_hash"], params=meta.get("params", {}),
        )
