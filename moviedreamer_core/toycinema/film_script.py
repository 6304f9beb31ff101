"""A toy film's script in the project's own format, and its reference images on disk.

``script_data(film)`` builds the plain mapping that ``moviedreamer_core.script.validate_script`` accepts;
``script_text(film)`` writes it as YAML text for ``load_script``. Character references are either file names
(``<Name>.png``, see ``write_film``) or indices into an IMAGE batch ordered like ``Film.cast``
(``reference_batch``). Shots keep the grammar's keyframes: one action sentence per keyframe.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import yaml

from .film import Film
from .world import CAMERAS, CHARACTERS, LOCATIONS

STYLE = "flat toy animation, simple bright shapes, plain colours"
REFERENCE_SIZE = 64


def reference_file_name(character: int) -> str:
    """File name of a character's reference image (``Ava.png``)."""
    return f"{CHARACTERS[character].name}.png"


def script_data(film: Film, references: Literal["files", "indices", "world", "none"] = "files") -> dict:
    """The film's script as plain data. ``references``: ``"files"`` names ``<Name>.png`` (written by
    ``write_film``), ``"indices"`` points into ``reference_batch(film)``, ``"world"`` into ``world_references()``
    (every character of the world, by character id: the toy cinema loader's ``characters`` output), ``"none"``
    leaves them out."""
    characters = []
    for i, c in enumerate(film.cast):
        entry = {"name": CHARACTERS[c].name, "description": CHARACTERS[c].description}
        if references == "files":
            entry["references"] = [reference_file_name(c)]
        elif references == "indices":
            entry["references"] = [i]
        elif references == "world":
            entry["references"] = [int(c)]
        elif references != "none":
            raise ValueError(f"references must be 'files', 'indices', 'world' or 'none', got {references!r}")
        characters.append(entry)
    shots = []
    for shot in film.shots:
        entry = {
            "id": shot.shot_id,
            "scene": shot.scene or LOCATIONS[shot.location].scene,
            "action": list(shot.actions) if len(shot.actions) > 1 else shot.actions[0],
            "characters": [CHARACTERS[c].name for c in shot.characters],
            "camera": CAMERAS[shot.camera].name,
            "duration": float(shot.duration),
        }
        if shot.transition != "cut":
            entry["transition"] = shot.transition
        shots.append(entry)
    return {"title": film.title, "style": STYLE, "characters": characters, "shots": shots}


def script_text(film: Film, references: Literal["files", "indices", "world", "none"] = "files") -> str:
    """The film's script as YAML text (``moviedreamer_core.script.load_script`` reads it)."""
    return yaml.safe_dump(script_data(film, references), sort_keys=False, allow_unicode=True, width=120)


def reference_batch(film: Film, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Reference images of the cast in ``Film.cast`` order, ``uint8 [n_cast, size, size, 3]`` (the batch that
    ``references: [i]`` indices point into)."""
    refs = film.references(size)
    return np.stack([refs[c] for c in film.cast]) if film.cast else np.zeros((0, size, size, 3), np.uint8)


def world_references(size: int = REFERENCE_SIZE) -> np.ndarray:
    """Reference images of every character of the world in character-id order, ``uint8 [N_CHARACTERS, size, size, 3]``."""
    from .render import render_reference

    return np.stack([render_reference(c, size) for c in range(len(CHARACTERS))])


def write_film(film: Film, folder: str, size: int = REFERENCE_SIZE, keyframes: int | None = None) -> str:
    """Write the cast's reference images (``<Name>.png``) into ``folder`` and return the script text whose
    references name them (load it with ``load_script(text, input_dir=folder)``). With ``keyframes`` set to a
    size, the ground-truth keyframes are written as well (``keyframes/0000.png`` ...)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for c, image in film.references(size).items():
        Image.fromarray(image).save(os.path.join(folder, reference_file_name(c)))
    if keyframes:
        kdir = os.path.join(folder, "keyframes")
        os.makedirs(kdir, exist_ok=True)
        for i, image in enumerate(film.images(keyframes)):
            Image.fromarray(image).save(os.path.join(kdir, f"{i:04d}.png"))
    text = script_text(film, "files")
    with open(os.path.join(folder, "script.yaml"), "w", encoding="utf-8") as f:
        f.write(text)
    return text
