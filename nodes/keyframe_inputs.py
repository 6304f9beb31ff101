"""The keyframes a node reads: IdentityDiffusionRender's ``keyframe_set`` (files in the project folder, one at a
time) or its ``keyframes`` IMAGE batch.

ShotAnimate and the storyboard sheet take either, check the count against the script the same way, and refuse the
preview IMAGE of ``images_output`` preview (a few keyframes spread over the movie) with the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..moviedreamer_core.project import KeyframeSet


@dataclass(frozen=True)
class KeyframeSource:
    count: int
    width: int
    height: int
    read: Callable[[int], np.ndarray]  # keyframe i as uint8 [H, W, 3]


def keyframe_source(keyframes: Optional[torch.Tensor], keyframe_set: Optional[KeyframeSet],
                    n_keyframes: int) -> KeyframeSource:
    """The connected keyframes (``keyframe_set`` when both are), checked against the script's ``n_keyframes``."""
    if keyframe_set is not None:
        count, width, height = keyframe_set.count, keyframe_set.width, keyframe_set.height
        source, read = f"keyframe_set ({keyframe_set.root})", keyframe_set.load
    elif keyframes is not None:
        count, height, width = int(keyframes.shape[0]), int(keyframes.shape[1]), int(keyframes.shape[2])
        source = "keyframe images"

        def read(i: int) -> np.ndarray:
            return (keyframes[i, :, :, :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    else:
        raise ValueError("connect the keyframes: IdentityDiffusionRender's keyframe_set (long movies) or keyframes")
    if count != n_keyframes:
        raise ValueError(f"got {count} {source}, but the script has {n_keyframes} keyframes"
                         + (" (IdentityDiffusionRender's images_output is preview: connect its keyframe_set)"
                            if keyframe_set is None else ""))
    return KeyframeSource(count, width, height, read)
