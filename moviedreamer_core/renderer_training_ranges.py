"""The renderer training's numbers and choices, one table for the MovieDreamerTrainRenderer node and
``cli/train_renderer.py``.

The command runs exactly what the node runs, so it takes exactly the values the node takes: the node's inputs
(``io.Int.Input`` / ``io.Float.Input`` default, min and max; ``io.Combo.Input`` options and default) and the
command's flags (``argument_types`` with the same bounds and default; ``choices``) are both made from ``RANGES`` and
``CHOICES``. Standard library only and no relative imports: ``cli/``
loads this file before the pack is importable (``host_library.core_module``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Range:
    """One number of the renderer training: its default and the closed range it must lie in."""

    default: Union[int, float]
    minimum: Union[int, float]
    maximum: Union[int, float]

    @property
    def whole(self) -> bool:
        """Whether it counts something (an integer input) rather than measures it."""
        return all(isinstance(v, int) for v in (self.default, self.minimum, self.maximum))


#: Input name (the node's; the command's flag is the same name with dashes) -> its range.
RANGES: dict[str, Range] = {
    "steps": Range(500, 1, 1_000_000),
    "batch_size": Range(4, 1, 256),
    "learning_rate": Range(1e-4, 1e-7, 1.0),
    "augmentations": Range(4, 0, 64),
    "identity_noise": Range(0.05, 0.0, 1.0),
    "context_tokens": Range(4, 1, 64),
    "identity_tokens": Range(4, 1, 64),
    # the dataset builder's face-grouping distance (data.clustering.DEFAULT_THRESHOLD, which suits dlib)
    "character_threshold": Range(0.07, 0.0, 2.0),
}


@dataclass(frozen=True)
class Choice:
    """One choice of the renderer training: the values it may take and the one it takes when not given."""

    options: tuple[str, ...]
    default: str


#: Input name (the command's flag: the same name with dashes) -> its choices. The face embedders are ScriptEncode's
#: too (the renderer must be trained with the embedder the script will be encoded with).
CHOICES: dict[str, Choice] = {
    "face_embedder": Choice(("dlib", "insightface", "clip_vision_crop", "toycinema"), "dlib"),
    "token_source": Choice(("image_embeds", "penultimate_hidden_states"), "image_embeds"),
}
