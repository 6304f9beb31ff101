"""Stories for the toy cinema: a small grammar with continuity, deterministic from a seed.

A film is a sequence of *scenes*; a scene holds one location for at least ``MIN_SCENE_SHOTS`` shots (except a
film shorter than that). Each scene opens with a wide establishing shot of whoever is there, then each shot
is one story event, chosen among those the current state allows:

=========  ==================================================================  ==================
event      what happens                                                        camera
=========  ==================================================================  ==================
enter      a cast member who has not appeared yet walks in                     wide or medium
return     a character who left earlier (or stayed behind) comes back          wide or medium
leave      a character on screen walks away (shown leaving, gone afterwards)   wide or medium
talk       two characters talk                                                 medium or close_up
look       one character looks around                                          close_up
together   everybody there, seen together                                      wide or medium
empty      nobody is there                                                     wide
=========  ==================================================================  ==================

When the location changes, each character present goes along with probability one half; the others stay
behind and may return later. Every character present keeps a stage slot (left, centre, right) for the whole
scene, so wide shots keep people where they were; closer shots frame the ones they show left to right in
the same order (the 180-degree rule of real films). A shot has one to three keyframes, each with a small
random pan and small figure offsets, and one action sentence per keyframe.
"""

from __future__ import annotations

import numpy as np

from .film import Film, KeyframePlan, ShotPlan
from .world import CAMERAS, CHARACTERS, LOCATIONS, MAX_ON_SCREEN, N_CHARACTERS, N_LOCATIONS, N_POSITIONS, camera_id

MIN_SCENE_SHOTS = 3
MAX_SCENE_SHOTS = 5
#: A character who leaves is off screen for at least this many shots before a ``return`` (a new scene may
#: bring it back sooner: time passes between scenes).
RETURN_AFTER_SHOTS = 2
#: Probabilities of 1, 2 and 3 keyframes in a shot.
KEYFRAME_COUNT_P = (0.5, 0.35, 0.15)
#: Relative weights of the events, where the state allows them.
EVENT_WEIGHTS = {"enter": 1.0, "return": 1.2, "leave": 0.8, "talk": 1.2, "look": 0.8, "together": 0.5}

WIDE, MEDIUM, CLOSE_UP = camera_id("wide"), camera_id("medium"), camera_id("close_up")


def _names(ids) -> str:
    names = [CHARACTERS[c].name for c in ids]
    if not names:
        return "nobody"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sentences(event: str, subject: int | None, shown: tuple[int, ...], where: str, n: int) -> tuple[str, ...]:
    """``n`` action sentences (one per keyframe) for an event."""
    s = CHARACTERS[subject].name if subject is not None else ""
    others = [c for c in shown if c != subject]
    other = CHARACTERS[others[0]].name if others else ""
    lines = {
        "establish": [f"{_names(shown)} {'stands' if len(shown) == 1 else 'stand'} {where}.",
                      f"{_names(shown)} {'looks' if len(shown) == 1 else 'look'} around.", "A breeze passes."] if shown
        else [f"Nobody is {where}; the wind blows.", "The place lies quiet.", "Nothing moves."],
        "empty": [f"Nobody is {where}.", "The place lies quiet.", "Nothing moves."],
        "enter": [f"{s} walks in.", f"{s} looks around {where}.", f"{s} stops and waits."],
        "return": [f"{s} comes back.", f"{s} waves.", f"{s} stops and waits."],
        "leave": [f"{s} says goodbye.", f"{s} turns to go.", f"{s} walks away."],
        "talk": [f"{s} talks to {other}.", f"{other} answers {s}.", f"{s} and {other} laugh."],
        "look": [f"{s} looks into the distance.", f"{s} smiles.", f"{s} frowns."],
        "together": [f"{_names(shown)} {'waits' if len(shown) == 1 else 'wait'} {where}.",
                     *(["They look around.", "They wait."] if len(shown) > 1 else [f"{s or _names(shown)} looks around.",
                                                                               f"{s or _names(shown)} waits."])],
    }[event]
    if n <= len(lines):
        return tuple(lines[:n])
    return tuple(lines[i % len(lines)] for i in range(n))


def _framing(shown: list[int], camera: int, slots: dict[int, int]) -> tuple[tuple[int, int], ...]:
    """Screen positions of the characters a shot shows: stage slots in wide shots, left to right otherwise."""
    ordered = sorted(shown, key=lambda c: slots[c])
    if camera == WIDE:
        return tuple((c, slots[c]) for c in ordered)
    layout = {0: (), 1: (1,), 2: (0, 2), 3: (0, 1, 2)}[len(ordered)]
    return tuple(zip(ordered, layout))


class _Story:
    """The grammar's state while one film is written."""

    def __init__(self, rng: np.random.Generator, cast_size: int, max_keyframes: int):
        self.rng = rng
        self.cast = [int(c) for c in rng.choice(N_CHARACTERS, size=cast_size, replace=False)]
        self.max_keyframes = max_keyframes
        self.present: dict[int, int] = {}  # character -> stage slot in this scene
        self.seen: set[int] = set()
        self.away: list[int] = []  # characters who left, oldest first
        self.left_at: dict[int, int] = {}  # character -> number of shots when it left
        self.shots: list[ShotPlan] = []
        self.location = -1
        self.visited: list[int] = []

    # ---------------------------------------------------------------------------------------- scenes

    def _next_location(self) -> int:
        rng = self.rng
        choices = [i for i in range(N_LOCATIONS) if i != self.location]
        revisit = [i for i in choices if i in self.visited]
        fresh = [i for i in choices if i not in self.visited]
        pool = revisit if revisit and (not fresh or rng.random() < 0.3) else fresh
        return int(rng.choice(pool))

    def _free_slot(self) -> int:
        free = [p for p in range(N_POSITIONS) if p not in self.present.values()]
        return int(self.rng.choice(free))

    def _arrive(self, c: int) -> None:
        self.present[c] = self._free_slot()
        self.seen.add(c)
        if c in self.away:
            self.away.remove(c)

    def _depart(self, c: int) -> None:
        del self.present[c]
        self.away.append(c)
        self.left_at[c] = len(self.shots)

    def start_scene(self) -> None:
        rng = self.rng
        self.location = self._next_location()
        self.visited.append(self.location)
        staying = [c for c in self.present if rng.random() < 0.5]
        for c in list(self.present):
            if c not in staying:
                self._depart(c)
        self.present = {}
        for c in staying:
            self._arrive(c)
        if not self.present and rng.random() < 0.8:
            newcomers = [c for c in self.cast if c not in self.seen]
            pool = newcomers if newcomers and (not self.away or rng.random() < 0.5) else self.away or newcomers
            self._arrive(int(rng.choice(pool)))

    # ----------------------------------------------------------------------------------------- shots

    def _choose_event(self) -> tuple[str, int | None]:
        rng = self.rng
        here = list(self.present)
        newcomers = [c for c in self.cast if c not in self.seen and c not in self.present]
        # Whoever left stays away for at least RETURN_AFTER_SHOTS shots before coming back.
        returning = [c for c in self.away if len(self.shots) - self.left_at[c] >= RETURN_AFTER_SHOTS]
        options: dict[str, float] = {}
        if len(here) < N_POSITIONS:
            if newcomers:
                options["enter"] = EVENT_WEIGHTS["enter"] * (2.0 if not here else 1.0)
            if returning:
                options["return"] = EVENT_WEIGHTS["return"] * (2.0 if not here else 1.0)
        if here:
            options["leave"] = EVENT_WEIGHTS["leave"] * (0.5 if len(here) == 1 else 1.0)
            options["look"] = EVENT_WEIGHTS["look"]
            options["together"] = EVENT_WEIGHTS["together"]
        if len(here) >= 2:
            options["talk"] = EVENT_WEIGHTS["talk"]
        if not options:
            return "empty", None
        names = list(options)
        p = np.asarray([options[n] for n in names])
        event = names[int(rng.choice(len(names), p=p / p.sum()))]
        if event == "enter":
            return event, int(rng.choice(newcomers))
        if event == "return":
            return event, int(returning[0] if rng.random() < 0.5 else rng.choice(returning))
        if event == "empty":
            return event, None
        return event, int(rng.choice(here))

    def add_shot(self, event: str, subject: int | None, scene_start: bool) -> None:
        rng = self.rng
        here = list(self.present)
        if event in ("enter", "return"):
            self._arrive(subject)
            here = list(self.present)
        if event in ("establish", "empty"):
            camera, shown = WIDE, here
        elif event in ("enter", "return", "leave", "together"):
            camera, shown = (WIDE if rng.random() < 0.5 else MEDIUM), here
        elif event == "talk":
            partner = int(rng.choice([c for c in here if c != subject]))
            camera, shown = (MEDIUM if rng.random() < 0.6 else CLOSE_UP), [subject, partner]
        elif event == "look":
            camera, shown = CLOSE_UP, [subject]
        else:
            raise ValueError(event)
        shown = shown[: MAX_ON_SCREEN[camera]]
        on_screen = _framing(shown, camera, self.present)
        n_kf = int(rng.choice(len(KEYFRAME_COUNT_P), p=KEYFRAME_COUNT_P)) + 1
        n_kf = min(n_kf, self.max_keyframes)
        width = CAMERAS[camera].width
        keyframes = tuple(
            KeyframePlan(
                location=self.location,
                camera=camera,
                figures=tuple((c, p, round(float(rng.uniform(-0.04, 0.04)), 4)) for c, p in on_screen),
                pan=round(float(rng.uniform(-0.03, 0.03)) * width, 5),
            )
            for _ in range(n_kf)
        )
        where = LOCATIONS[self.location].where
        first_shot = not self.shots
        transition = "cut" if first_shot or not scene_start else str(rng.choice(["dissolve", "fade", "cut"]))
        self.shots.append(
            ShotPlan(
                index=len(self.shots),
                event=event,
                location=self.location,
                camera=camera,
                characters=tuple(c for c, _ in on_screen),
                actions=_sentences(event, subject, tuple(c for c, _ in on_screen), where, n_kf),
                duration=float(n_kf * rng.choice([1.5, 2.0, 2.5])),
                transition=transition,
                keyframes=keyframes,
                subject=subject,
            )
        )
        if event == "leave":
            self._depart(subject)


def generate_film(seed: int, n_shots: int = 12, max_keyframes_per_shot: int = 3, cast_size: int | None = None) -> Film:
    """Write and stage one toy film from ``seed`` (same seed, same film). ``cast_size`` defaults to a random
    3 to 5 of the ``world.CHARACTERS``; only the ones who appear end up in ``Film.cast``."""
    if n_shots < 1:
        raise ValueError("a film needs at least one shot")
    rng = np.random.default_rng(seed)
    size = int(rng.integers(3, 6)) if cast_size is None else int(cast_size)
    story = _Story(rng, min(max(size, 1), N_CHARACTERS), max(1, int(max_keyframes_per_shot)))
    while len(story.shots) < n_shots:
        remaining = n_shots - len(story.shots)
        length = min(int(rng.integers(MIN_SCENE_SHOTS, MAX_SCENE_SHOTS + 1)), remaining)
        if 0 < remaining - length < MIN_SCENE_SHOTS:
            length = remaining
        story.start_scene()
        story.add_shot("establish", None, scene_start=True)
        for _ in range(length - 1):
            event, subject = story._choose_event()
            story.add_shot(event, subject, scene_start=False)
    cast: list[int] = []
    for shot in story.shots:
        for c in shot.characters:
            if c not in cast:
                cast.append(c)
    return Film(seed=int(seed), title=f"Toy Film {seed}", cast=tuple(cast), shots=tuple(story.shots))


def generate_films(seed: int, n_films: int, **kwargs) -> list[Film]:
    """``n_films`` films whose seeds are drawn from ``seed`` (the same list every time)."""
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_films)
    return [generate_film(int(s), **kwargs) for s in seeds]
