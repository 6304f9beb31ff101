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
talk       two characters talk (with three there, often all three seen)        medium or close_up
look       one character looks around                                          close_up
together   everybody there, seen together                                      wide or medium
empty      nobody is there (or all just left: ``empty_after_leave``)           wide (or closer)
=========  ==================================================================  ==================

When the location changes, each character present goes along with probability ``FOLLOW_P``, the others stay
behind and may return later; a new scene may find one more character there (``JOIN_P``). Every character present keeps a stage slot (left, centre, right) for the whole
scene, so wide shots keep people where they were; closer shots frame the ones they show left to right in
the same order (the 180-degree rule of real films). A shot has one to three keyframes, each with a small
random pan and small figure offsets, and one action sentence per keyframe.

**What history must carry** (issue #21). Each film draws, from its own seed, a *look* for every place (the light it
is seen in, ``world.PLACE_LOOKS``) and a *hat* for every character (``world.HATS``). The script says a place's look
only in the first shot of its first visit (the scene sentence, e.g. "... in golden evening light") and a
character's hat only in the first action sentence of its first shot ("Ava, in a purple hat, walks in."); every
later keyframe's script is silent about both while its picture must show them. Films are 16 shots long and come
back to places they have seen (``REVISIT_P``), so some of those later keyframes are many keyframes after the one
that stated the look. ``ShotPlan.states_look`` / ``states_hats`` record what a shot's script states, so scores can
keep to the keyframes where only history knows (``Film.unscripted``).

**Stage places.** Where a character stands (its stage slot: left, centre or right, drawn at random when it arrives)
is said once, in the first action sentence of the first *wide* shot that shows it there ("Eli stands on the left."),
and kept for the rest of the visit: later wide shots show it there and their scripts are silent. Closer shots frame
whom they show left to right, so a stage place said there would contradict the picture; they never say one. Without this, the first
wide shot of four in ten visits put a character at a place no script or keyframe could tell (measured on the test
films: 0.60 of wide keyframes had every figure's place shown earlier in the visit), so no planner could draw the
exact cast; now a planner that reads its history can. Users do not write stage places, so the planner also trains on a share of films
whose scripts never say them (``generate_film(say_places=False)``, ``planner_runs.UNSAID_PLACES``). Users also write
actions of their own ("Dee points the way.", "Ava wait."), where every toy sentence names its event: the planner
trains on a share of action sentences in such words too (``in_other_words``, ``planner_runs.OTHER_WORDS``). And users
cut into a new place on a closer shot, with or without anybody there: the planner trains on films a share of whose
scenes open on a medium shot or a close-up (``generate_film(cut_in=, empty_cut_in=)``, ``planner_runs.CUT_IN``).

**Phrasings.** Every sentence has several phrasings; the last of each is held out: ``phrasings="train"`` (the
training films) never uses it, ``phrasings="all"`` (the default: development and test films) draws among all of
them. Phrasings, looks and hats come from their own random streams, so a film's story and staging are the same
whichever phrasings it is written in.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from .film import Film, KeyframePlan, ShotPlan
from .world import (CAMERAS, CHARACTERS, HATS, LOCATIONS, MAX_ON_SCREEN, N_CHARACTERS, N_HATS, N_LOCATIONS, N_PLACE_LOOKS,
                    N_POSITIONS, PLACE_LOOKS, camera_id)

MIN_SCENE_SHOTS = 3
MAX_SCENE_SHOTS = 5
#: A character who leaves is off screen for at least this many shots before a ``return`` (a new scene may
#: bring it back sooner: time passes between scenes).
RETURN_AFTER_SHOTS = 2
#: Probabilities of 1, 2 and 3 keyframes in a shot.
KEYFRAME_COUNT_P = (0.5, 0.35, 0.15)
#: Relative weights of the events, where the state allows them.
EVENT_WEIGHTS = {"enter": 1.5, "return": 1.5, "leave": 0.5, "talk": 1.2, "look": 0.8, "together": 1.5}
#: With three characters there, the share of ``talk`` shots that show all three (a conversation of three, medium).
GROUP_TALK_P = 0.6
#: When the place changes, each character present goes along with this probability.
FOLLOW_P = 0.6
#: Probability that a new scene finds one more character there (a newcomer or one who left earlier).
JOIN_P = 0.35
#: Probability that a new scene goes back to a place the film has already shown (when there is one).
REVISIT_P = 0.6
#: A keyframe's pan is drawn within +-PAN of its camera's width.
PAN = 0.03
#: Films are this many shots long by default (four or five scenes: places and characters come back).
DEFAULT_SHOTS = 16
PHRASINGS = ("train", "all")

#: Phrasings of each location's scene sentence (``world.Location.scene`` first; the last is held out). None of
#: them says the light: that is the place's per-film look, said once (``world.PLACE_LOOKS``). Only the catalogue sentence
#: of the beach says "sand": with "sand dunes" for the desert, the planner took a scene change to the desert for the
#: beach or for no change at all (the toy workflow's film).
SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "beach": ("a sandy beach, waves rolling in", "the seaside, with waves breaking on the shore", "a stretch of shore by the sea"),
    "forest": ("a dark pine forest, tall trees all around", "deep in a forest of tall pines", "among the pines of a dark wood"),
    "desert": ("a wide desert of rolling dunes", "dry dunes stretching to the horizon", "the dry desert, dune after dune"),
    "city_night": ("a city square at night under the stars", "a paved town square after dark, stars overhead",
                   "the city centre at night"),
    "snowfield": ("a quiet snowfield, snow falling", "a white field of snow, flakes drifting down", "open snowy ground in winter"),
    "meadow": ("a green meadow full of small white flowers", "a grassy field dotted with white flowers", "a flowering meadow"),
}

WIDE, MEDIUM, CLOSE_UP = camera_id("wide"), camera_id("medium"), camera_id("close_up")

#: How a script says a stage place (index = screen position: left, centre, right); the last phrasing is held out.
PLACE_PHRASES: tuple[tuple[str, ...], ...] = (
    ("on the left", "at the left", "over on the left side"),
    ("in the middle", "in the centre", "in the very middle"),
    ("on the right", "at the right", "over on the right side"),
)
#: The sentence that says where characters stand ("{}": "Eli on the left and Fen in the middle"); the last is held out.
PLACE_SENTENCES: tuple[str, ...] = ("{} stands {}.", "{} is {}.", "{} takes a place {}.")
PLACE_SENTENCES_MANY: tuple[str, ...] = ("They stand: {}.", "They are placed: {}.", "Where they stand: {}.")


def _listing(items: list[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _names(ids) -> str:
    names = [CHARACTERS[c].name for c in ids]
    return _listing(names) if names else "nobody"


def _pick(options, rng: np.random.Generator, phrasings: str) -> str:
    """One phrasing of ``options``: the last is held out unless ``phrasings == "all"``."""
    pool = options if phrasings == "all" or len(options) == 1 else options[:-1]
    return pool[int(rng.integers(len(pool)))]


def _sentences(event: str, subject: int | None, shown: tuple[int, ...], where: str, n: int,
               rng: np.random.Generator, phrasings: str) -> tuple[str, ...]:
    """``n`` action sentences (one per keyframe) for an event, each in one of its phrasings (the last of every
    tuple is held out of ``phrasings="train"``)."""
    s = CHARACTERS[subject].name if subject is not None else ""
    others = [c for c in shown if c != subject]
    other = CHARACTERS[others[0]].name if others else ""
    who = _names(shown)
    one = len(shown) == 1
    lines = {
        "establish": [(f"{who} {'stands' if one else 'stand'} {where}.", f"{who} {'is' if one else 'are'} {where}.",
                       f"We find {who} {where}."),
                      (f"{who} {'looks' if one else 'look'} around.", f"{who} {'glances' if one else 'glance'} about.",
                       f"{who} {'takes' if one else 'take'} in the view."),
                      ("A breeze passes.", "The wind picks up.", "A gust of wind goes by.")] if shown
        else [(f"Nobody is {where}; the wind blows.", f"There is no one {where}; wind blows.",
               f"The wind blows {where}, and nobody is there."),
              ("The place lies quiet.", "All is quiet.", "Silence."), ("Nothing moves.", "Nothing stirs.", "All is still.")],
        "empty": [(f"Nobody is {where}.", f"No one is {where}.", f"{where[0].upper() + where[1:]}, nobody."),
                  ("The place lies quiet.", "All is quiet.", "Silence."), ("Nothing moves.", "Nothing stirs.", "All is still.")],
        "enter": [(f"{s} walks in.", f"{s} arrives.", f"{s} steps into view."),
                  (f"{s} looks around {where}.", f"{s} glances around {where}.", f"{s} takes a look around {where}."),
                  (f"{s} stops and waits.", f"{s} halts and waits.", f"{s} stands still, waiting.")],
        "return": [(f"{s} comes back.", f"{s} returns.", f"{s} is back again."),
                   (f"{s} waves.", f"{s} waves hello.", f"{s} raises a hand in greeting."),
                   (f"{s} stops and waits.", f"{s} halts and waits.", f"{s} stands still, waiting.")],
        "leave": [(f"{s} says goodbye.", f"{s} says farewell.", f"{s} bids everyone goodbye."),
                  (f"{s} turns to go.", f"{s} turns away.", f"{s} starts to leave."),
                  (f"{s} walks away.", f"{s} goes off.", f"{s} heads off out of sight.")],
        "talk": [(f"{s} talks to {other}.", f"{s} speaks with {other}.", f"{s} has a word with {other}."),
                 (f"{other} answers {s}.", f"{other} replies to {s}.", f"{other} says something back to {s}."),
                 (f"{s} and {other} laugh.", f"{s} and {other} laugh together.", f"{s} and {other} share a laugh.")],
        "look": [(f"{s} looks into the distance.", f"{s} gazes into the distance.", f"{s} stares far away."),
                 (f"{s} smiles.", f"{s} grins.", f"A smile from {s}."),
                 (f"{s} frowns.", f"{s} scowls.", f"A frown from {s}.")],
        "together": [(f"{who} {'waits' if one else 'wait'} {where}.", f"{who} {'stays' if one else 'stay'} {where}.",
                      f"{who} {'lingers' if one else 'linger'} {where}."),
                     *([("They look around.", "They glance about.", "All of them look around."),
                        ("They wait.", "They stand and wait.", "They keep waiting.")] if not one else
                       [(f"{s or who} looks around.", f"{s or who} glances about.", f"{s or who} takes in the view."),
                        (f"{s or who} waits.", f"{s or who} stands and waits.", f"{s or who} keeps waiting.")])],
    }[event]
    return tuple(_pick(lines[i % len(lines)], rng, phrasings) for i in range(n))


def _state_hats(first: str, shown: tuple[int, ...], hats: dict[int, int], rng: np.random.Generator,
                phrasings: str) -> str:
    """``first`` with the hat of every character of ``shown`` said where the sentence first names it (or, for one it
    does not name, in a sentence of its own after it)."""
    extra = []
    for c in shown:
        name = CHARACTERS[c].name
        phrase = _pick(HATS[hats[c]].phrases, rng, phrasings).format(name)
        i = _name_at(first, name)
        if i < 0:
            extra.append(f"{name} wears a {HATS[hats[c]].name} hat.")
            continue
        end = i + len(name)
        rest = first[end:]
        if rest.startswith((".", ";", ",")) or not rest.strip():
            # "... comes back." / "Ava, Bo and Cy ...": no comma of the phrase's own before the sentence's
            first = first[:i] + phrase.rstrip(",") + rest
        else:
            first = first[:i] + phrase + rest
    return " ".join([first] + extra)


def _state_places(first: str, placed: tuple[tuple[int, int], ...], rng: np.random.Generator, phrasings: str) -> str:
    """``first`` followed by a sentence saying the stage place of each ``(character, slot)`` of ``placed``."""
    if not placed:
        return first
    parts = [(CHARACTERS[c].name, _pick(PLACE_PHRASES[p], rng, phrasings)) for c, p in placed]
    if len(parts) == 1:
        return f"{first} {_pick(PLACE_SENTENCES, rng, phrasings).format(*parts[0])}"
    listed = _listing([f"{name} {where}" for name, where in parts])
    return f"{first} {_pick(PLACE_SENTENCES_MANY, rng, phrasings).format(listed)}"


def _name_at(text: str, name: str) -> int:
    """Where ``name`` first stands as a whole word in ``text`` (-1 when it does not)."""
    import re

    m = re.search(r"\b" + re.escape(name) + r"\b", text)
    return m.start() if m else -1


def _framing(shown: list[int], camera: int, slots: dict[int, int]) -> tuple[tuple[int, int], ...]:
    """Screen positions of the characters a shot shows: stage slots in wide shots, left to right otherwise."""
    ordered = sorted(shown, key=lambda c: slots[c])
    if camera == WIDE:
        return tuple((c, slots[c]) for c in ordered)
    layout = {0: (), 1: (1,), 2: (0, 2), 3: (0, 1, 2)}[len(ordered)]
    return tuple(zip(ordered, layout))


class _Story:
    """The grammar's state while one film is written."""

    def __init__(self, rng: np.random.Generator, cast_size: int, max_keyframes: int, seed: int = 0,
                 phrasings: str = "all", say_places: bool = True, cut_in: float = 0.0, empty_cut_in: float = 0.0,
                 empty_after_leave: float = 0.0):
        self.rng = rng
        self.say_places = say_places
        # closer openings have a stream of their own, drawn only when asked for: films without them are unchanged
        self.cut_in, self.empty_cut_in, self.cuts = cut_in, empty_cut_in, np.random.default_rng([int(seed), 4])
        # so have the empty shots after the cast has left (empty_after_leave)
        self.empty_after_leave, self.lingers = empty_after_leave, np.random.default_rng([int(seed), 6])
        # the per-film state and the phrasings have streams of their own (the story is the same whatever they draw)
        state = np.random.default_rng([int(seed), 1])
        self.looks = {loc: int(state.integers(N_PLACE_LOOKS)) for loc in range(N_LOCATIONS)}
        self.hats = {c: int(state.integers(N_HATS)) for c in range(N_CHARACTERS)}
        self.words = np.random.default_rng([int(seed), 2])
        self.phrasings = phrasings
        self.looks_stated: set[int] = set()
        self.hats_stated: set[int] = set()
        self.cast = [int(c) for c in rng.choice(N_CHARACTERS, size=cast_size, replace=False)]
        self.max_keyframes = max_keyframes
        self.present: dict[int, int] = {}  # character -> stage slot in this scene
        self.places_stated: set[int] = set()  # characters whose current slot the script has said (_arrive forgets it)
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
        pool = revisit if revisit and (not fresh or rng.random() < REVISIT_P) else fresh
        return int(rng.choice(pool))

    def _free_slot(self) -> int:
        free = [p for p in range(N_POSITIONS) if p not in self.present.values()]
        return int(self.rng.choice(free))

    def _arrive(self, c: int) -> None:
        self.present[c] = self._free_slot()
        self.places_stated.discard(c)  # a new place: the script says it again
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
        staying = [c for c in self.present if rng.random() < FOLLOW_P]
        for c in list(self.present):
            if c not in staying:
                self._depart(c)
        self.present = {}
        for c in staying:
            self._arrive(c)
        if not self.present and rng.random() < 0.8:
            self._arrive(self._someone())
        if 0 < len(self.present) < min(N_POSITIONS, len(self.cast)) and rng.random() < JOIN_P:  # somebody else is there already
            self._arrive(self._someone())

    def _someone(self) -> int:
        """A character not here: a newcomer or one who left earlier."""
        rng = self.rng
        newcomers = [c for c in self.cast if c not in self.seen and c not in self.present]
        away = [c for c in self.away if c not in self.present]
        pool = newcomers if newcomers and (not away or rng.random() < 0.5) else away or newcomers
        if not pool:  # the callers ask only while someone of the cast is not here
            raise RuntimeError("every character of the cast is already here")
        return int(rng.choice(pool))

    # ----------------------------------------------------------------------------------------- shots

    def _choose_event(self) -> tuple[str, int | None]:
        rng = self.rng
        here = list(self.present)
        if (not here and self.empty_after_leave and self.shots and self.shots[-1].characters
                and self.lingers.random() < self.empty_after_leave):  # the last one has just walked away
            return "empty", None
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
            share = self.cut_in if here else self.empty_cut_in
            if share and self.cuts.random() < share:  # the scene opens closer (cut_in, empty_cut_in)
                camera = MEDIUM if len(here) > MAX_ON_SCREEN[CLOSE_UP] or self.cuts.random() < 0.5 else CLOSE_UP
        elif event in ("enter", "return", "leave", "together"):
            camera, shown = (WIDE if rng.random() < 0.5 else MEDIUM), here
        elif event == "talk":
            partner = int(rng.choice([c for c in here if c != subject]))
            camera, shown = (MEDIUM if rng.random() < 0.6 else CLOSE_UP), [subject, partner]
            if len(here) == 3 and rng.random() < GROUP_TALK_P:
                camera, shown = MEDIUM, [subject, partner] + [c for c in here if c not in (subject, partner)]
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
                pan=round(float(rng.uniform(-PAN, PAN)) * width, 5),
                look=self.looks[self.location],
                hats=tuple(self.hats[c] for c, _ in on_screen),
            )
            for _ in range(n_kf)
        )
        where = LOCATIONS[self.location].where
        shown = tuple(c for c, _ in on_screen)
        scene = _pick(SCENE_PHRASES[LOCATIONS[self.location].name], self.words, self.phrasings)
        states_look = self.location not in self.looks_stated
        if states_look:  # the place's light, said once: where the film first shows it
            self.looks_stated.add(self.location)
            scene = f"{scene}, {_pick(PLACE_LOOKS[self.looks[self.location]].phrases, self.words, self.phrasings)}"
        actions = list(_sentences(event, subject, shown, where, n_kf, self.words, self.phrasings))
        states_hats = tuple(c for c in shown if c not in self.hats_stated)
        if states_hats:  # a hat, said once: in the first sentence of the character's first shot
            self.hats_stated.update(states_hats)
            actions[0] = _state_hats(actions[0], states_hats, self.hats, self.words, self.phrasings)
        states_places = tuple(c for c in shown if c not in self.places_stated) if camera == WIDE else ()
        if states_places:  # a stage place, said once: in the first wide shot that shows the character there
            self.places_stated.update(states_places)
            placed = tuple((c, self.present[c]) for c in states_places)
            said = _state_places(actions[0], placed, self.words, self.phrasings)  # drawn either way: same later words
            if self.say_places:
                actions[0] = said
            else:
                states_places = ()
        first_shot = not self.shots
        transition = "cut" if first_shot or not scene_start else str(rng.choice(["dissolve", "fade", "cut"]))
        self.shots.append(
            ShotPlan(
                index=len(self.shots),
                event=event,
                location=self.location,
                camera=camera,
                characters=shown,
                actions=tuple(actions),
                duration=float(n_kf * rng.choice([1.5, 2.0, 2.5])),
                transition=transition,
                keyframes=keyframes,
                subject=subject,
                scene=scene,
                states_look=states_look,
                states_hats=states_hats,
                states_places=states_places,
            )
        )
        if event == "leave":
            self._depart(subject)


def generate_film(seed: int, n_shots: int = DEFAULT_SHOTS, max_keyframes_per_shot: int = 3, cast_size: int | None = None,
                  phrasings: str = "all", say_places: bool = True, cut_in: float = 0.0,
                  empty_cut_in: Optional[float] = None, empty_after_leave: float = 0.0) -> Film:
    """Write and stage one toy film from ``seed`` (same seed, same film). ``cast_size`` defaults to a random
    3 to 5 of the ``world.CHARACTERS``; only the ones who appear end up in ``Film.cast``. ``phrasings``: ``"train"``
    leaves out every sentence's held-out phrasing (the training films), ``"all"`` draws among all of them.
    ``say_places=False``: the script never says where a character stands (the pictures, and every other word, are
    the film's with them): scripts as users write them, which the planner trains on too (``planner_runs``).
    ``cut_in``: the share of scenes (and of empty shots) that open on a medium shot or a close-up instead of a wide one,
    as users' scripts often do: a planner that only saw places change on wide shots drew a closer shot at a new place
    at the previous place (22 of 30 medium shots, 20 of 30 close-ups, found by an audit), and an empty closer shot
    with a figure. The shots after it, and every other film, are the same whatever ``cut_in`` (a stream of its own).
    ``empty_cut_in``: the same share for the shots where nobody is there (default: ``cut_in``); they are few, so a
    planner needs a larger share of them to learn that an empty closer shot shows nobody.
    ``empty_after_leave``: the share of the moments when the last character on screen has just walked away that the
    next shot shows the place left empty (an ``empty`` event, framed closer than wide at the ``empty_cut_in`` share).
    The grammar alone almost never writes one (in 300 training films, none: somebody else walks in first), and a
    user's empty medium shot or close-up after everyone left was drawn wide (an audit: 0 of 48 keyframes at the
    script's camera). The cause was the decoder, which had never drawn a place empty in a closer shot: its tuning phase
    trains on films with this share (``cli/toycinema_train.py``, ``TUNE_EMPTY_AFTER_LEAVE``). Films with the share 0
    are the ones they were (a stream of its own); with it, the story after such a shot differs."""
    empty_cut_in = cut_in if empty_cut_in is None else empty_cut_in
    for name, share in (("cut_in", cut_in), ("empty_cut_in", empty_cut_in), ("empty_after_leave", empty_after_leave)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} is a share from 0 to 1, got {share!r}")
    if n_shots < 1:
        raise ValueError("a film needs at least one shot")
    if phrasings not in PHRASINGS:
        raise ValueError(f"phrasings must be one of {PHRASINGS}, got {phrasings!r}")
    rng = np.random.default_rng(seed)
    size = int(rng.integers(3, 6)) if cast_size is None else int(cast_size)
    story = _Story(rng, min(max(size, 1), N_CHARACTERS), max(1, int(max_keyframes_per_shot)), seed, phrasings, say_places,
                   cut_in, empty_cut_in, empty_after_leave)
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
    return Film(seed=int(seed), title=f"Toy Film {seed}", cast=tuple(cast), shots=tuple(story.shots),
                place_looks={loc: story.looks[loc] for loc in dict.fromkeys(s.location for s in story.shots)},
                hats={c: story.hats[c] for c in cast})


#: Actions of a user's own words (``in_other_words``): a verb in its singular and plural forms. Users write them
#: with either form whatever the count ("Ava wait."), so the form is drawn at random: the count is the script's
#: ``characters``, not the grammar of its sentence.
OTHER_WORDS = (("smiles", "smile"), ("waits", "wait"), ("nods", "nod"), ("frowns", "frown"), ("laughs", "laugh"),
               ("points the way", "point the way"), ("listens", "listen"), ("looks up", "look up"), ("sighs", "sigh"),
               ("thinks it over", "think it over"), ("whispers", "whisper"), ("shouts", "shout"), ("eats", "eat"),
               ("closes the eyes", "close the eyes"), ("reads a letter", "read a letter"), ("sits down", "sit down"))


def in_other_words(film: Film, share: float, seed: int) -> Film:
    """``film`` with a ``share`` of its action sentences, drawn from ``seed``, in a user's own words: "<names> <verb>."
    (``OTHER_WORDS``, either verb form), saying nothing of the event the grammar chose. A sentence that states a hat
    or a stage place is kept (it carries what history must keep). The pictures are the film's: a planner trained on
    such films reads how many are on screen, and who, from the script's characters rather than from the event its
    sentences name (the toy planner drew a lone character's close-up twice after "Dee points the way.", or for "Ava
    wait.", sentences no toy film has)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share is from 0 to 1, got {share!r}")
    if share == 0.0:
        return film
    rng = np.random.default_rng([int(seed), 5])
    shots = []
    for shot in film.shots:
        actions = list(shot.actions)
        for i in range(len(actions)):
            keep = i == 0 and (shot.states_hats or shot.states_places)
            if rng.random() < share and not keep and shot.characters:
                verb = OTHER_WORDS[int(rng.integers(len(OTHER_WORDS)))][int(rng.integers(2))]
                actions[i] = f"{_names(shot.characters)} {verb}."
        shots.append(dataclasses.replace(shot, actions=tuple(actions)))
    return dataclasses.replace(film, shots=tuple(shots))


def generate_films(seed: int, n_films: int, *, unsaid_places: float = 0.0, other_words: float = 0.0,
                   **kwargs) -> list[Film]:
    """``n_films`` films whose seeds are drawn from ``seed`` (the same list every time). ``unsaid_places``: the share
    of them, drawn from ``seed`` too (the first ``n`` films are the same whatever ``n_films``), whose scripts never say
    where a character stands (``generate_film``'s ``say_places=False``). ``other_words``: the share of each film's
    action sentences written in a user's own words (``in_other_words``)."""
    if not 0.0 <= unsaid_places <= 1.0:
        raise ValueError(f"unsaid_places is a share from 0 to 1, got {unsaid_places!r}")
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_films)
    unsaid = np.random.default_rng([int(seed), 3]).random(n_films) < unsaid_places
    return [in_other_words(generate_film(int(s), say_places=not u, **kwargs), other_words, int(s))
            for s, u in zip(seeds, unsaid)]
