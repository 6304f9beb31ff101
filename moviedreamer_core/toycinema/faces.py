"""The toy cinema's "faces" in a keyframe: the figures standing at its screen places, for the identity report.

The per-keyframe identity report (``moviedreamer_core/identity_report.py``) asks the script's face embedder for every
face in a rendered keyframe (``FaceEmbedder.faces``). The toy identity embedder has no face detector, and needs none:
the toy world stages its characters at three screen places, and ``counting.PlaceCounter`` already reads who stands
at each (or nobody), with this same embedder, at the shot's camera size. A toy keyframe's faces are therefore its
occupied places, as the count-aware scorer reads them: each place's window (``identity.crop_boxes``) is the box, the
window's embedding is the face's embedding, and the margin of its character cosine over its ``nobody`` cosine is the
detection score. The report then compares those embeddings with the script's identity banks, exactly as for real
faces.

The camera size comes from the script (as the scorer's does): the report passes the shot's ``camera``. Script
cameras the toy world does not have are read at the nearest toy size (``NEAREST_CAMERA``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..identity.base import MAX_FACES, Face, check_rgb_uint8
from ..planner.inputs import CAMERAS as PLANNER_CAMERAS
from ..planner.inputs import nearest_camera
from .counting import NOBODY, PlaceCounter, place_plan
from .identity import crop_boxes
from .world import CAMERAS, camera_id

#: Script cameras the toy world does not stage, read at the toy size nearest to them: the one the toy planner plans
#: them at (``planner.inputs.nearest_camera``; its file lists the toy's three, ``PlannerConfig.cameras``).
NEAREST_CAMERA = {c: nearest_camera(c, [t.name for t in CAMERAS]) for c in PLANNER_CAMERAS
                  if c not in {t.name for t in CAMERAS}}
#: A keyframe whose camera is not given is read as a wide shot (every place on its own).
DEFAULT_CAMERA = "wide"


def toy_camera(camera: Optional[str]) -> int:
    """The toy camera id to read a keyframe of the script camera ``camera`` at."""
    name = NEAREST_CAMERA.get(camera or DEFAULT_CAMERA, camera or DEFAULT_CAMERA)
    return camera_id(name) if name in {c.name for c in CAMERAS} else camera_id(DEFAULT_CAMERA)


def place_counter(embedder) -> PlaceCounter:
    """The ``PlaceCounter`` of ``embedder``, made once (it renders and embeds the six reference portraits)."""
    counter = getattr(embedder, "_place_counter", None)
    if counter is None:
        counter = PlaceCounter(embedder)
        embedder._place_counter = counter
    return counter


def toy_faces(embedder, image: np.ndarray, camera: Optional[str] = None, limit: int = MAX_FACES) -> list[Face]:
    """The occupied screen places of a toy keyframe as ``Face``s, left to right (see the module docstring). A
    keyframe that is not square is read in its centre square."""
    image = check_rgb_uint8(image)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    cam = toy_camera(camera)
    counter = place_counter(embedder)
    embedded = counter.embed_places([square], [cam])  # the windows are embedded once, for the reading and the faces
    reading = counter.read_embedded(embedded, [cam])[0]
    places = [p for p, c in enumerate(reading.occupants) if c != NOBODY][:max(limit, 0)]
    if not places:
        return []
    boxes = crop_boxes(place_plan(cam), side)
    out = []
    for p in places:
        vec = embedded[0, p]
        x0, y0, x1, y1 = boxes[p][1]
        box = (max(int(round(x0)), 0) + left, max(int(round(y0)), 0) + top,
               min(int(round(x1)), side) + left, min(int(round(y1)), side) + top)
        score = reading.character_cosine[p] - reading.nobody_cosine[p]
        out.append(Face(box, vec.astype(np.float32), float(score)))
    return out
