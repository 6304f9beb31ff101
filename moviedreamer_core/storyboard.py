"""``MD_STORYBOARD``: the planned visual tokens of every keyframe, with their lineage.

The planner's output and the renderer's input. Besides the tokens ``[n_keyframes, K, D]`` it records the
token space they live in (the renderer refuses another), which shot each keyframe belongs to, the seeds
(a base seed and one derived seed per keyframe, so one keyframe can be re-planned or re-rendered alone),
which planner made it, and the hashes of the script and embeddings it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Optional

import torch

from .spaces import TokenSpace
from .text_files import loads_json_object

STORYBOARD_FORMAT_VERSION = 1
METADATA_KEY = "moviedreamer_storyboard"


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
    null_tokens: Optional[torch.Tensor] = None  # [1, K, D]: the token encoder's encoding of a black image, when the
    # tokens were encoded from images (Keyframe Encode); IP-Adapter plus renderers read it on the unconditional pass

    def __post_init__(self):
        if self.tokens.ndim != 3:
            raise ValueError(f"storyboard tokens must be [n_keyframes, K, D], got shape {tuple(self.tokens.shape)}")
        n = int(self.tokens.shape[0])
        for name in ("keyframe_shot", "shot_ids", "keyframe_seeds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"storyboard {name} has {len(getattr(self, name))} entries for {n} keyframes")
        if (self.tokens.shape[1], self.tokens.shape[2]) != (self.token_space.K or self.tokens.shape[1], self.token_space.D):
            raise ValueError(f"storyboard tokens {tuple(self.tokens.shape)} do not fit {self.token_space.describe()}")
        if self.null_tokens is not None and (self.null_tokens.ndim != 3 or self.null_tokens.shape[0] != 1
                                             or self.null_tokens.shape[2] != self.token_space.D):
            raise ValueError(f"storyboard null tokens {tuple(self.null_tokens.shape)} do not fit {self.token_space.describe()}")

    @property
    def n_keyframes(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seeds(self) -> dict:
        """The seed lineage: the base seed and the seed derived from it for each keyframe."""
        return {"base": self.seed, "keyframes": list(self.keyframe_seeds)}

    def metadata(self) -> dict:
        return {
            "format": STORYBOARD_FORMAT_VERSION, "token_space": self.token_space.to_dict(),
            "keyframe_shot": list(self.keyframe_shot), "shot_ids": list(self.shot_ids),
            "planner_name": self.planner_name, "seed": self.seed, "keyframe_seeds": [str(s) for s in self.keyframe_seeds],
            "script_hash": self.script_hash, "content_hash": self.content_hash, "params": self.params,
        }

    def to_safetensors(self, path: str) -> None:
        """Write the tokens, with everything else as JSON metadata (atomically: temporary file, then rename)."""
        from .files import save_safetensors

        tensors = {"tokens": self.tokens.detach().float().cpu().contiguous()}
        if self.null_tokens is not None:
            tensors["null_tokens"] = self.null_tokens.detach().float().cpu().contiguous()
        save_safetensors(tensors, path, metadata={METADATA_KEY: json.dumps(self.metadata())})

    @classmethod
    def from_safetensors(cls, path: str) -> "Storyboard":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if METADATA_KEY not in meta:
                raise ValueError(f"{os.path.basename(path)} is not a MovieDreamer storyboard file (no '{METADATA_KEY}' metadata)")
            meta = loads_json_object(meta[METADATA_KEY], f"{path}: its '{METADATA_KEY}' metadata")  # names the file
            if int(meta.get("format", 1)) > STORYBOARD_FORMAT_VERSION:
                raise ValueError(f"{os.path.basename(path)}: storyboard format {meta['format']} is newer than this pack "
                                 f"understands ({STORYBOARD_FORMAT_VERSION}); update ComfyUI-MovieDreamer")
            # copies, not views of the file's memory map (Windows refuses to replace a file that is still mapped)
            tokens = f.get_tensor("tokens").clone()
            null_tokens = f.get_tensor("null_tokens").clone() if "null_tokens" in f.keys() else None
        return cls(
            tokens=tokens, token_space=TokenSpace.from_dict(meta["token_space"]), keyframe_shot=tuple(meta["keyframe_shot"]),
            shot_ids=tuple(meta["shot_ids"]), planner_name=meta["planner_name"], seed=int(meta["seed"]),
            keyframe_seeds=tuple(int(s) for s in meta["keyframe_seeds"]), script_hash=meta["script_hash"],
            content_hash=meta["content_hash"], params=meta.get("params", {}), null_tokens=null_tokens,
        )

    save = to_safetensors  # short names
    load = from_safetensors


def storyboard_report(board: Storyboard, max_keyframes: int = 200) -> str:
    """Readable summary: lineage, then per keyframe its shot, token norm and cosine similarity to the keyframe
    before (high inside a shot, lower at a cut: a quick check of the planner's continuity)."""
    flat = board.tokens.reshape(board.n_keyframes, -1).float()
    lines = [f"{board.n_keyframes} keyframes by {board.planner_name}, {board.token_space.describe()}, seed {board.seed}, "
             f"params {board.params}", f"script {board.script_hash[:12]}, embeds {board.content_hash[:12]}", ""]
    for i in range(min(board.n_keyframes, max_keyframes)):
        sim = "" if i == 0 else f", similarity to previous {float(torch.nn.functional.cosine_similarity(flat[i], flat[i - 1], dim=0)):.3f}"
        lines.append(f"#{i} shot {board.shot_ids[i]}: norm {float(flat[i].norm()):.3f}{sim}")
    if board.n_keyframes > max_keyframes:
        lines.append(f"... {board.n_keyframes - max_keyframes} more keyframes")
    return "\n".join(lines)
