"""Following a queued prompt (websocket, or polling ``/history``) and printing per-node progress."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from .client import Client
from .messages import _id_key, node_label
from .websocket import WebSocket


class ProgressPrinter:
    """Turns websocket messages of one prompt into short lines on ``out`` (stderr)."""

    def __init__(self, prompt: dict, out=None):
        self.prompt = prompt
        self.out = out or sys.stderr
        self.started: list[str] = []
        self.last = None

    def line(self, text: str) -> None:
        if text != self.last:
            print(text, file=self.out, flush=True)
            self.last = text

    def handle(self, event: str, data: dict) -> None:
        n = len(self.prompt)
        if event == "execution_cached":
            nodes = [str(x) for x in data.get("nodes") or []]
            if nodes:
                self.line(f"cached (unchanged since the last run): {', '.join(sorted(nodes, key=_id_key))}")
        elif event == "executing" and data.get("node") is not None:
            nid = str(data["node"])
            if nid not in self.started:
                self.started.append(nid)
            self.line(f"[{len(self.started)}/{n}] {node_label(self.prompt, nid)}")
        elif event == "progress":
            nid = data.get("node")
            self.line(f"      {node_label(self.prompt, nid)}: step {data.get('value')}/{data.get('max')}")
        elif event == "moviedreamer.keyframe":
            self.line(f"      keyframe {int(data.get('index', 0)) + 1}/{data.get('total')} (shot {data.get('shot')}): "
                      f"{data.get('action', '')}")
        elif event == "execution_interrupted":
            self.line(f"interrupted in {node_label(self.prompt, data.get('node_id'))}")


def follow(client: Client, ws: Optional[WebSocket], prompt_id: str, on_message: Callable[[str, dict], None],
           timeout: Optional[float]) -> dict:
    """Wait for the prompt to finish; return its ``/history`` entry. Messages of this prompt go to ``on_message``.

    With a websocket the end is the ``executing`` message with ``node: null`` (sent after the history is
    written); without one (or once it drops) ``/history/<id>`` is polled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while ws is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        try:
            msg = ws.receive(1.0)
        except (ConnectionError, OSError):
            ws = None
            break
        if msg is None:
            entry = client.history(prompt_id)  # a finished run whose last message was missed
            if entry and _finished(entry):
                return entry
            continue
        if not isinstance(msg, dict):
            continue
        event, data = msg.get("type"), msg.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
            continue
        on_message(event, data)
        if event == "executing" and data.get("node") is None and "prompt_id" in data:
            break
    while True:
        entry = client.history(prompt_id)
        if entry and _finished(entry):
            return entry
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.3)


def _finished(entry: dict) -> bool:
    status = entry.get("status") or {}
    return status.get("completed") is not None and status.get("status_str") in ("success", "error")


def _close(ws: Optional[WebSocket]) -> None:
    if ws is not None:
        ws.close()
