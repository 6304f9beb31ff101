"""A toy film as data: shots, keyframe plans and ground-truth labels (no pixels until asked for).

A ``Film`` is what the grammar (``grammar.py``) produces from a seed. Each keyframe is a ``KeyframePlan``:
everything the renderer needs (location, camera, small camera pan, who stands where) and nothing random,
so ``Film.images(size)`` is a pure function of the plan and renders the same bytes every time, at 32x32 or
64x64 (or any size). ``FrameLabel`` is the ground truth the label probe learns and every stage is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .world import CAMERAS, CHARACTERS, LOCATIONS, N_CHARACTERS, POSITIONS


@dataclass(frozen=True)
class FrameLabel:
    """Ground truth of one keyframe: location id, camera id, and ``(character id, position id)`` pairs
    sorted by character id (position ids index ``world.POSITIONS``: left, centre, right)."""

    location: int
    camera: int
    on_screen: tuple[tuple[int, int], ...] = ()

    @property
    def characters(self) -> frozenset[int]:
        """Ids of the characters on screen."""
        return frozenset(c for c, _ in self.on_screen)

    def presence(self, n_characters: int = N_CHARACTERS) -> np.ndarray:
        """Multi-hot ``float32 [n_characters]`` vector of the characters on screen."""
        out = np.zeros(n_characters, dtype=np.float32)
        for c, _ in self.on_screen:
            out[c] = 1.0
        return out

    def describe(self) -> str:
        """Readable form, e.g. ``beach/wide: Ava@left, Bo@right``."""
        who = ", ".join(f"{CHARACTERS[c].name}@{POSITIONS[p]}" for c, p in self.on_screen) or "nobody"
        return f"{LOCATIONS[self.location].name}/{CAMERAS[self.camera].name}: {who}"


@dataclass(frozen=True)
class KeyframePlan:
    """One keyframe to render. ``figures`` holds ``(character id, position id, dx)``; ``dx`` is a small
    horizontal offset in screen units (fraction of the frame width), ``pan`` a camera offset in world units.
    ``look`` is the place's per-film light (an index of ``world.PLACE_LOOKS``, 0: as catalogued) and ``hats`` the
    figures' hats, one ``world.HATS`` index per figure (empty: bare-headed, as before films had costumes)."""

    location: int
    camera: int
    figures: tuple[tuple[int, int, float], ...] = ()
    pan: float = 0.0
    look: int = 0
    hats: tuple[int, ...] = ()

    def __post_init__(self):
        if self.hats and len(self.hats) != len(self.figures):  # a short list would drop figures from the picture
            raise ValueError(f"{len(self.hats)} hats for {len(self.figures)} figures (one per figure, or none)")

    @property
    def label(self) -> FrameLabel:
        return FrameLabel(self.location, self.camera, tuple(sorted((c, p) for c, p, _ in self.figures)))


@dataclass(frozen=True)
class ShotPlan:
    """One shot: a story event (``establish``, ``enter``, ``return``, ``leave``, ``talk``, ``look``, ``empty``),
    shown with one camera at one location, with one action sentence per keyframe."""

    index: int
    event: str
    location: int
    camera: int
    characters: tuple[int, ...]  # on screen, left to right
    actions: tuple[str, ...]
    duration: float
    transition: str
    keyframes: tuple[KeyframePlan, ...]
    subject: int | None = None  # the character the event is about (who enters, leaves, speaks ...)
    scene: str = ""  # the script's scene sentence ("": the location's catalogue sentence)
    states_look: bool = False  # the scene sentence says the place's per-film look (its first visit's first shot)
    states_hats: tuple[int, ...] = ()  # characters whose hat the first action sentence says (their first shot)
    states_places: tuple[int, ...] = ()  # characters whose stage place (left / centre / right) the shot's script says

    @property
    def shot_id(self) -> str:
        return f"s{self.index + 1:02d}"


@dataclass
class Film:
    """A whole toy film. ``cast`` lists the ids of the characters who appear, in order of first appearance."""

    seed: int
    title: str
    cast: tuple[int, ...]
    shots: tuple[ShotPlan, ...]
    place_looks: dict = field(default_factory=dict)  # location id -> world.PLACE_LOOKS index, this film's light
    hats: dict = field(default_factory=dict)  # character id -> world.HATS index, this film's costume detail
    _images: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def keyframes(self) -> list[KeyframePlan]:
        return [k for s in self.shots for k in s.keyframes]

    @property
    def n_keyframes(self) -> int:
        return sum(len(s.keyframes) for s in self.shots)

    def labels(self) -> list[FrameLabel]:
        """Ground-truth label of every keyframe, in order."""
        return [k.label for k in self.keyframes]

    def unscripted(self) -> list[dict]:
        """Per keyframe, the per-film state its picture must show although its script does not say it:
        ``{"look": look id or None, "hats": {character id: hat id}}``. ``look`` is set on keyframes of shots that
        do not state the place's look; ``hats`` lists the characters on screen whose hat the shot does not state
        (whatever the camera: a scorer keeps to the sizes where a hat can be seen)."""
        out = []
        for shot in self.shots:
            for plan in shot.keyframes:
                out.append({"look": None if shot.states_look else plan.look,
                            "hats": {c: h for (c, _, _), h in zip(plan.figures, plan.hats) if c not in shot.states_hats}})
        return out

    def shot_of_keyframe(self) -> list[int]:
        """Shot index of every keyframe, in order."""
        return [s.index for s in self.shots for _ in s.keyframes]

    def images(self, size: int = 32) -> np.ndarray:
        """Every keyframe rendered as ``uint8 [n_keyframes, size, size, 3]`` (cached per size)."""
        if size not in self._images:
            from .render import render_keyframe

            self._images[size] = np.stack([render_keyframe(k, size) for k in self.keyframes])
        return self._images[size]

    def references(self, size: int = 64) -> dict[int, np.ndarray]:
        """A close-up reference image of every cast member alone on a neutral background, by character id."""
        from .render import render_reference

        return {c: render_reference(c, size) for c in self.cast}
