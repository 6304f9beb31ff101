"""The on-prompt step of distributed runs (``moviedreamer_core/distribution/prompt.py`` does the work).

Registered with the host by ``nodes/__init__.py``; it runs on every prompt a server queues, ComfyUI-Distributed's
included. On the master of a distributed run it also leaves the job's marker in the output folder, by which a
worker that writes into the same folder knows it need not send its files (``distribution/shared_folder.py``).
"""

from __future__ import annotations

import logging

from ..moviedreamer_core.distribution.participation import parse_participation
from ..moviedreamer_core.distribution.prompt import annotate
from ..moviedreamer_core.distribution.shared_folder import mark_master_folder
from . import host


def on_prompt(json_data):
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    if not isinstance(prompt, dict):
        return json_data
    who = annotate(prompt)
    try:
        if who is not None and who.is_master:
            parse_participation(who.to_json())  # a checked job id names the marker file
            mark_master_folder(host.output_directory(), who.job)
    except Exception as e:  # noqa: BLE001  (the nodes report a bad value themselves, naming the field)
        logging.warning("MovieDreamer: distributed run not marked: %s", e)
    return json_data
