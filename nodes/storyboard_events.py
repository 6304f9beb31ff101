"""Websocket messages that fill the front-end's storyboard panel (``js/moviedreamer.js``).

* ``moviedreamer.storyboard``: the keyframe list (index, shot id, action, who is on screen), sent by the
  planner when it has planned and by the renderer when it starts, so a panel shows its labelled slots;
* ``moviedreamer.keyframe``: one keyframe image, sent by the renderer the moment the keyframe is saved in
  the movie project folder (``image`` is what the host's ``/view`` route takes), with its identity report's
  ``identity_report.panel_view`` (``ok``, the flag lines, per character name, similarity and flags) when there is
  one.

Both carry the sending node's id; the panel of that node shows them.
"""

from __future__ import annotations

from typing import Optional

from . import host

STORYBOARD_EVENT = "moviedreamer.storyboard"
KEYFRAME_EVENT = "moviedreamer.keyframe"
#: The panel shows text, not essays: an action longer than this is cut with an ellipsis.
MAX_LABEL = 120


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def keyframe_labels(script_embeds) -> list[dict]:
    names = [c.name for c in script_embeds.characters]
    return [{"index": k.index, "shot": k.shot_id, "action": _label(k.action), "characters": [names[c] for c in k.characters]}
            for k in script_embeds.keyframes]


def send_storyboard(script_embeds) -> bool:
    return host.send_event(STORYBOARD_EVENT, {"title": script_embeds.title, "keyframes": keyframe_labels(script_embeds)})


def send_keyframe(index: int, total: int, path: str, spec, identity: Optional[dict] = None) -> bool:
    image: Optional[dict] = host.view_reference(path)
    return host.send_event(KEYFRAME_EVENT, {"index": index, "total": total, "shot": spec.shot_id,
                                            "action": _label(spec.action), "image": image,
                                            **({"identity": identity} if identity is not None else {})})
