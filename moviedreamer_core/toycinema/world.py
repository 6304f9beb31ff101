"""The toy cinema's fixed catalogue: locations, characters, camera sizes and screen positions.

Everything here is constant data; stories (``grammar.py``) pick from it and the renderer (``render.py``)
draws it. The world is a continuous canvas with coordinates ``x`` (left to right) and ``y`` (top to bottom),
both in ``[0, 1]`` for the wide shot. Every location has a sky above its horizon and a ground below it, each
with its own colour, and one texture drawn in world coordinates, so a closer camera shows it larger.

Every character has a fixed look: a body colour used by nobody else (no location uses it either), a torso
shape (circle, square or triangle), a hair colour and a simple face (skin, two eyes, a mouth). Characters
stand with their feet on the line ``y = FEET_Y`` and are ``CHARACTER_HEIGHT`` tall in world units.

A camera is a square window onto the world: ``wide`` shows all of it, ``medium`` half of it and ``close_up``
a quarter (head and torso of a standing figure). Characters are staged for the camera: a character at screen
position ``left``/``centre``/``right`` stands at ``x = x0 + u * width`` of the window, so on screen the
positions are the same for every camera while figures and textures grow as the camera comes closer.

Two things vary from film to film and are drawn per film (``grammar.py``), not fixed here: each place's *look*
(``PLACE_LOOKS``: the light it is seen in, a colour transform of its background) and each character's *hat*
(``HATS``: a costume detail of that film; reference portraits show the character bare-headed). A film's script
says each once, where it is first shown, and never again: later keyframes must keep what earlier ones showed
(issue #21: a world in which history matters).
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Location:
    """A place: sky and ground colours, horizon height (world ``y``), a texture and words for the script."""

    name: str
    sky: RGB
    ground: RGB
    horizon: float
    texture: str
    texture_colour: RGB
    scene: str
    where: str  # "on the beach": how action sentences name the place


@dataclass(frozen=True)
class Look:
    """A character's fixed appearance and the words that describe it."""

    name: str
    body: RGB
    shape: str  # "circle" | "square" | "triangle"
    hair: RGB
    skin: RGB
    description: str


@dataclass(frozen=True)
class CameraSize:
    """A square window onto the world: ``width`` in world units, top edge ``y0``; centred horizontally."""

    name: str  # a value of moviedreamer_core.script.Camera
    width: float
    y0: float


LOCATIONS: tuple[Location, ...] = (
    Location("beach", (120, 190, 240), (232, 212, 152), 0.50, "waves", (250, 240, 205),
             "a sandy beach, waves rolling in", "on the beach"),
    Location("forest", (176, 214, 170), (38, 104, 48), 0.46, "trees", (22, 70, 30),
             "a dark pine forest, tall trees all around", "in the forest"),
    Location("desert", (250, 222, 176), (196, 146, 88), 0.60, "dunes", (170, 120, 70),
             "a wide desert of rolling dunes", "in the desert"),
    Location("city_night", (18, 24, 62), (92, 92, 104), 0.52, "stars_bricks", (235, 235, 200),
             "a city square at night under the stars", "in the city square"),
    Location("snowfield", (196, 212, 228), (246, 246, 250), 0.56, "snow", (160, 176, 200),
             "a quiet snowfield, snow falling", "on the snowfield"),
    Location("meadow", (88, 158, 228), (118, 188, 70), 0.55, "flowers", (255, 244, 244),
             "a green meadow full of small white flowers", "in the meadow"),
)

CHARACTERS: tuple[Look, ...] = (
    Look("Ava", (220, 36, 36), "circle", (96, 52, 24), (242, 200, 166),
         "a small figure with a round red body, brown hair and a round face"),
    Look("Bo", (36, 64, 216), "square", (210, 210, 210), (226, 186, 150),
         "a small figure with a square blue body, grey hair and a round face"),
    Look("Cy", (244, 204, 24), "triangle", (20, 20, 20), (200, 150, 110),
         "a small figure with a triangular yellow body, black hair and a round face"),
    Look("Dee", (196, 40, 196), "square", (230, 120, 30), (246, 210, 180),
         "a small figure with a square magenta body, ginger hair and a round face"),
    Look("Eli", (255, 120, 0), "triangle", (60, 40, 120), (170, 120, 84),
         "a small figure with a triangular orange body, dark violet hair and a round face"),
    Look("Fen", (0, 186, 186), "circle", (250, 230, 120), (236, 196, 160),
         "a small figure with a round teal body, blond hair and a round face"),
)

@dataclass(frozen=True)
class PlaceLook:
    """A per-film look of a place: the light it is seen in. The background's colours first lose saturation
    (``grey + saturation * (colour - grey)``, ``grey`` the colour's luma), then become ``clip(colour * scale + shift)``;
    the figures are not affected. ``phrases`` are the words a script may use for it (the last one is held out of
    the training films' scripts).

    The grey light mostly desaturates and dims, with a milder blue tint than its first version (scale (0.55, 0.6,
    0.72) + shift (30, 34, 40), no desaturation), which pulled every place's hue towards the same blue-grey: its
    decoder drew a grey desert green, and with 60 films of training the probe read grey deserts as the city square.
    Desaturation keeps each place's hue, so places stay further apart under every light; the small tint still moves
    the already grey city square, which desaturation alone would leave as it is."""

    name: str
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]
    phrases: tuple[str, ...]
    saturation: float = 1.0


@dataclass(frozen=True)
class Hat:
    """A per-film costume detail: a hat of one colour (used by no character's body; the black hat is close to Cy's
    black hair, so only the purple and green hats are told apart from a bare head by colour alone) and its names."""

    name: str
    colour: RGB
    phrases: tuple[str, ...]  # "{}" is the character's name; the last one is held out of training scripts


PLACE_LOOKS: tuple[PlaceLook, ...] = (
    PlaceLook("clear", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
              ("in clear daylight", "on a bright clear day", "in plain daylight")),
    PlaceLook("golden", (0.95, 0.72, 0.42), (40.0, 22.0, 0.0),
              ("in golden evening light", "at sunset, everything golden", "in the warm glow of dusk")),
    PlaceLook("grey", (0.72, 0.74, 0.8), (24.0, 26.0, 36.0),
              ("under a grey, overcast sky", "on a dull grey day", "in flat grey light"), saturation=0.45),
)

HATS: tuple[Hat, ...] = (
    Hat("black", (15, 15, 15), ("{}, in a black hat,", "{}, wearing a black hat,", "{}, a black hat on,")),
    Hat("purple", (150, 60, 255), ("{}, in a purple hat,", "{}, wearing a purple hat,", "{}, a purple hat on,")),
    Hat("green", (0, 230, 0), ("{}, in a green hat,", "{}, wearing a green hat,", "{}, a green hat on,")),
)
N_PLACE_LOOKS = len(PLACE_LOOKS)
N_HATS = len(HATS)

#: Camera sizes, index = camera label id. Names are values of ``moviedreamer_core.script.Camera``.
CAMERAS: tuple[CameraSize, ...] = (
    CameraSize("wide", 1.0, 0.0),
    CameraSize("medium", 0.5, 0.45),
    CameraSize("close_up", 0.25, 0.56),
)

#: Screen positions, index = position label id; value = horizontal place in the camera window (0..1).
POSITIONS: tuple[str, ...] = ("left", "centre", "right")
POSITION_U: tuple[float, ...] = (0.2, 0.5, 0.8)

#: The most characters each camera frames at once (close-ups hold one or two faces).
MAX_ON_SCREEN: tuple[int, ...] = (3, 3, 2)

#: Feet line and figure size, in world units.
FEET_Y = 0.88
CHARACTER_HEIGHT = 0.30

#: Background of reference images: a flat neutral grey, used by no location and no character.
NEUTRAL: RGB = (128, 128, 128)

N_LOCATIONS = len(LOCATIONS)
N_CHARACTERS = len(CHARACTERS)
N_CAMERAS = len(CAMERAS)
N_POSITIONS = len(POSITIONS)


def camera_id(name: str) -> int:
    """Label id of a camera name (``"close_up"`` -> 2)."""
    return [c.name for c in CAMERAS].index(name)


def location_id(name: str) -> int:
    """Label id of a location name (``"desert"`` -> 2)."""
    return [loc.name for loc in LOCATIONS].index(name)


def character_id(name: str) -> int:
    """Label id of a character name (``"Cy"`` -> 2)."""
    return [c.name for c in CHARACTERS].index(name)
