"""A stable content hash of a script, for caching, resume and lineage.

The hash is taken over the *normalised* script, so it does not change with formatting: JSON or YAML, key
order, whitespace around values, ``close-up`` or ``close_up``, ``id: 1`` or ``id: "1"``, ``duration: 3`` or
``3.0``, an omitted ``keyframes`` or its default written out. Any change a viewer could see (a sentence, a
duration, a reference file name) changes it. The format version is part of the hashed content.
"""

from __future__ import annotations

import hashlib
import json

from .schema import SCRIPT_FORMAT_VERSION, Script


def normalised_script(script: Script) -> dict:
    """The script as plain JSON data with every default filled in and every spelling made canonical."""
    data = script.model_dump(mode="json")
    for shot, model in zip(data["shots"], script.shots):
        shot["id"] = model.shot_id
        shot["keyframes"] = model.n_keyframes
        shot["duration"] = float(model.duration)
    return {"format": SCRIPT_FORMAT_VERSION, "script": data}


def canonical_json(data) -> str:
    """JSON with sorted keys and no insignificant whitespace: the same data always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def script_hash(script: Script) -> str:
    """SHA-256 (hex) of the normalised script."""
    return hashlib.sha256(canonical_json(normalised_script(script)).encode("utf-8")).hexdigest()
