"""The multimodal movie script, as code.

MovieDreamer plans a movie from a *multimodal script* (paper section 3.2): per keyframe a plot/action
sentence, the scene, the visual style and the characters on screen, each character carrying a name, a text
description and face identity from reference photos. This module is that script's schema. It is written
with pydantic (the host already ships it) so that one definition gives parsing, type errors with exact
locations, defaults, and a JSON Schema for editors (``Script.model_json_schema()``).

Example (YAML; JSON works the same)::

    title: The Lighthouse Keepers
    style: hand-painted watercolour, soft morning light
    characters:
      - name: Ava
        description: a young woman with short red hair and a green raincoat
        references: [ava_1.png, ava_2.png]      # file names in the host's input folder
      - name: Bo
        description: an old fisherman with a white beard
        references: [0]                         # or indices into ScriptEncode's IMAGE batch
    shots:
      - id: s1
        scene: a lighthouse on a cliff at dawn, stormy sea
        action: Ava climbs the spiral staircase.
        characters: [Ava]
        camera: wide
        duration: 4
      - id: s2
        scene: the lamp room at the top of the lighthouse
        action: [Bo turns to the door., Ava hands Bo a lantern.]   # one sentence per keyframe
        characters: [Ava, Bo]
        camera: medium
        duration: 6
        transition: dissolve

Cross-field rules (unknown or duplicate names, file safety, limits) live in ``validate.py``, which collects
every problem in one pass; this module only describes the shape of a valid script.
"""

from __future__ import annotations

import re

from enum import Enum
from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

#: Limits that catch typos ("keyframes: 300" for "3") before hours of sampling; all of them, with the limits
#: on the work of parsing, are in ``limits.py``.
from .limits import (  # noqa: F401  (re-exported: callers import the movie limits from here)
    MAX_CHARACTERS,
    MAX_CHARACTERS_PER_SHOT,
    MAX_FILE_NAME_LENGTH,
    MAX_KEYFRAMES_PER_SHOT,
    MAX_NAME_LENGTH,
    MAX_REFERENCES_PER_CHARACTER,
    MAX_SHOT_DURATION_S,
    MAX_SHOTS,
    MAX_TEXT_LENGTH,
    MAX_TOTAL_KEYFRAMES,
)
from .limits import list_limit

#: Version of the script format. Part of the content hash: a format change never collides with old hashes.
SCRIPT_FORMAT_VERSION = 1


class Camera(str, Enum):
    """Shot size / camera framing. Spelling variants ("close-up", "Close Up") are accepted."""

    extreme_wide = "extreme_wide"
    wide = "wide"
    full = "full"
    medium = "medium"
    medium_close_up = "medium_close_up"
    close_up = "close_up"
    extreme_close_up = "extreme_close_up"
    over_the_shoulder = "over_the_shoulder"
    point_of_view = "point_of_view"
    aerial = "aerial"


class Transition(str, Enum):
    """How a shot begins after the previous one (used when the movie is assembled). ``continuous``: the
    previous shot's motion lands on this shot's first keyframe (image-to-video models with a first-last-frame
    mode, e.g. Wan; elsewhere a cut)."""

    cut = "cut"
    fade = "fade"
    dissolve = "dissolve"
    fade_to_black = "fade_to_black"
    wipe = "wipe"
    continuous = "continuous"


def _normalise_choice(value):
    """Accept "Close-Up", "close up" and "close_up" alike for enum fields."""
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_").replace(" ", "_")
    return value


NonEmptyText = Annotated[StrictStr, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
#: A reference image: a file name inside the host's input folder, or an index into the IMAGE batch input.
Reference = Union[Annotated[StrictStr, Field(min_length=1, max_length=MAX_FILE_NAME_LENGTH)], Annotated[StrictInt, Field(ge=0)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Character(_Strict):
    """A recurring character: the planner binds its identity embedding to every keyframe it appears in."""

    name: Name = Field(description="Unique name, used in shots[].characters.")
    description: NonEmptyText = Field(description="Appearance in words; the renderer's text condition uses it.")
    references: Annotated[list[Reference], Field(max_length=list_limit("characters", "references"))] = Field(
        default_factory=list,
        description="Reference photos of the face: file names in the input folder, or indices into the "
        "IMAGE batch connected to ScriptEncode. Several photos make a steadier identity.",
    )


class Shot(_Strict):
    """One shot: a continuous piece of the movie, planned as one or more keyframes and animated as one clip
    (or a chain of clips when it is longer than the video model's native length)."""

    id: Union[Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_LENGTH)], StrictInt] = Field(
        description="Unique shot id; names the shot's files in the movie project folder."
    )
    scene: NonEmptyText = Field(description="Place, time of day, light.")
    action: Union[NonEmptyText, Annotated[list[NonEmptyText], Field(min_length=1, max_length=list_limit("shots", "action"))]] = Field(
        description="What happens: one sentence, or a list with one sentence per keyframe."
    )
    characters: Annotated[list[Name], Field(max_length=list_limit("shots", "characters"))] = Field(
        default_factory=list,
        description="Names of the characters on screen, left to right (renderers with identity slots, like the toy "
        "cinema's, place them in that order).",
    )
    camera: Camera = Field(default=Camera.medium, description="Shot size / framing.")
    duration: Annotated[float, Field(strict=True, gt=0, le=MAX_SHOT_DURATION_S)] = Field(
        description="Length of the shot in seconds."
    )
    keyframes: Optional[Annotated[StrictInt, Field(ge=1, le=MAX_KEYFRAMES_PER_SHOT)]] = Field(
        default=None, description="Keyframes planned for this shot (default 1, or the number of action sentences)."
    )
    transition: Transition = Field(default=Transition.cut, description="How this shot starts.")

    _choice = field_validator("camera", "transition", mode="before")(lambda cls, v: _normalise_choice(v))

    @property
    def shot_id(self) -> str:
        return str(self.id)

    @property
    def n_keyframes(self) -> int:
        if self.keyframes is not None:
            return self.keyframes
        return len(self.action) if isinstance(self.action, list) else 1

    def keyframe_action(self, k: int) -> str:
        """The action sentence of keyframe ``k`` of this shot (a single sentence is shared)."""
        return self.action[k] if isinstance(self.action, list) else self.action


class Script(_Strict):
    """A whole movie. ``shots`` run in order; each shot's keyframes are planned autoregressively."""

    title: NonEmptyText = Field(description="Title of the movie; also the default project name.")
    style: Annotated[StrictStr, Field(max_length=MAX_TEXT_LENGTH)] = Field(
        default="", description="Visual style shared by every keyframe (enters the planner as its own sentence)."
    )
    characters: Annotated[list[Character], Field(max_length=list_limit("characters"))] = Field(default_factory=list, description="The cast.")
    shots: Annotated[list[Shot], Field(min_length=1, max_length=list_limit("shots"))] = Field(description="The shots, in order.")

    def character_index(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.characters)}

    def keyframes(self) -> list["KeyframeSpec"]:
        """Every keyframe of the movie in order, with everything the planner and renderer need to know."""
        index = self.character_index()
        out: list[KeyframeSpec] = []
        for s, shot in enumerate(self.shots):
            for k in range(shot.n_keyframes):
                out.append(
                    KeyframeSpec(
                        index=len(out),
                        shot_index=s,
                        shot_id=shot.shot_id,
                        index_in_shot=k,
                        action=shot.keyframe_action(k),
                        scene=shot.scene,
                        camera=shot.camera.value,
                        characters=tuple(index[n] for n in shot.characters),
                    )
                )
        return out

    @property
    def n_keyframes(self) -> int:
        return sum(s.n_keyframes for s in self.shots)


class KeyframeSpec(BaseModel):
    """One keyframe as the later stages see it (derived from the script, never written by users)."""

    model_config = ConfigDict(frozen=True)

    index: int
    shot_index: int
    shot_id: str
    index_in_shot: int
    action: str
    scene: str
    camera: str
    characters: tuple[int, ...]


def spelling_pattern(choice: str) -> str:
    """A JSON Schema ``pattern`` (ECMA 262) of the spellings ``_normalise_choice`` reads as ``choice``: any case,
    ``-``, space or ``_`` between words, blanks around ("Close-Up", "close up", " CLOSE_UP ")."""
    letters = "".join(f"[{c.upper()}{c}]" if c.isalpha() else "[-_ ]" if c == "_" else re.escape(c) for c in choice)
    return rf"^\s*{letters}\s*$"


def json_schema() -> dict:
    """The JSON Schema of the script format, for editors (VS Code's yaml/json schema settings). A choice field
    (camera, transition) offers its canonical names and accepts the spellings the validator reads as them, so an
    editor checking against the schema does not flag "Close-Up" the validator takes."""
    schema = Script.model_json_schema()
    for enum in (Camera, Transition):
        node = schema["$defs"][enum.__name__]
        choices = node.pop("enum")
        node.pop("type", None)
        node["anyOf"] = [{"type": "string", "enum": choices},
                         {"type": "string", "pattern": "|".join(spelling_pattern(c) for c in choices)}]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MovieDreamer script"
    return schema
