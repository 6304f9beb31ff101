"""Toy cinema: a procedural film world small enough to train and score MovieDreamer on a CPU in minutes.

* ``world``: the fixed catalogue (six locations, six characters with fixed looks, three camera sizes,
  three screen positions) and what varies per film: each place's look (its light) and each character's hat.
* ``grammar``: stories with continuity, deterministic from a seed (``generate_film``, ``generate_films``).
* ``film``: a film as data (shots, keyframe plans) and its ground-truth ``FrameLabel`` per keyframe.
* ``render``: keyframes (32x32, 64x64, any size) and character reference portraits as ``uint8 [H, W, 3]``.
* ``film_script``: the film's script in the project's own format, and its reference images on disk.
* ``probe``: the label probe, a small CNN that reads location, camera and who is on screen from any image.
* ``scores``: location and camera accuracy, character-presence F1, exact character-set match, and the count-aware
  scores (exact cast, extra and missing figures, a character drawn twice) of place readings.
* ``counting``: ``PlaceCounter`` reads who stands at each screen place (or nobody) with the toy identity embedder,
  so the number of figures drawn is measured, not only which characters are present.

Pure numpy and torch (PIL only to write PNG files); nothing here imports the host.
"""

from .film import Film, FrameLabel, KeyframePlan, ShotPlan
from .film_script import reference_batch, script_data, script_text, write_film
from .grammar import generate_film, generate_films
from .render import render_keyframe, render_reference
from .scores import (
    camera_accuracy,
    character_f1,
    character_set_match,
    count_scores,
    location_accuracy,
    position_accuracy,
    score_labels,
    trivial_scores,
    unscripted_scores,
)
from .world import CAMERAS, CHARACTERS, HATS, LOCATIONS, PLACE_LOOKS, POSITIONS

__all__ = [
    "Film", "FrameLabel", "KeyframePlan", "ShotPlan", "reference_batch", "script_data", "script_text", "write_film",
    "generate_film", "generate_films", "render_keyframe", "render_reference", "camera_accuracy", "character_f1",
    "character_set_match", "count_scores", "location_accuracy", "position_accuracy", "score_labels", "trivial_scores", "unscripted_scores",
    "CAMERAS", "CHARACTERS", "HATS", "LOCATIONS", "PLACE_LOOKS", "POSITIONS",
]
