"""HTTP to the ComfyUI server (standard library): GET/POST JSON, and a clear error when nobody answers."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional


class ServerUnreachable(Exception):
    """No answer at the server URL: exit code 3."""


class Client:
    """The few HTTP calls the CLI makes, with ``urllib``."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, path: str, body: Optional[dict] = None) -> tuple[int, Any]:
        """``(status, parsed JSON or text)``; connection failures raise ``ServerUnreachable``."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
            raise ServerUnreachable(getattr(e, "reason", None) or e)
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except (ValueError, RecursionError):
            return status, text

    def history(self, prompt_id: str) -> Optional[dict]:
        status, body = self.request(f"/history/{urllib.parse.quote(prompt_id)}")
        if status == 200 and isinstance(body, dict):
            return body.get(prompt_id)
        return None


def fetch_object_info(client: Client, prompt: dict) -> dict:
    """``/object_info/<class>`` of every node type the workflow uses (``{}`` for types the server lacks)."""
    info: dict = {}
    for cls in sorted({n["class_type"] for n in prompt.values()}):
        status, body = client.request(f"/object_info/{urllib.parse.quote(cls, safe='')}")
        if status != 200 or not isinstance(body, dict):
            raise ServerUnreachable(f"the server answers, but not as ComfyUI does (HTTP {status} on /object_info)")
        info.update(body)
    return info
