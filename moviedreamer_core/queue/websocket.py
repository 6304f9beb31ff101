"""A minimal websocket client (RFC 6455, standard library) for the server's ``/ws`` progress messages."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct
import time
import urllib.parse
from typing import Any, Optional

from ..text_files import loads_json


class WebSocket:
    """A minimal RFC 6455 client (text frames, ping/pong, close) over a plain or TLS socket; standard library."""

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        port = parts.port or (443 if secure else 80)
        self.sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if secure:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=parts.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the websocket during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101" not in status:
            raise ConnectionError(f"websocket upgrade refused: {status}")
        self.closed = False
        self._fragments: list[bytes] = []

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _frame(self) -> Optional[tuple[bool, int, bytes]]:
        """One whole frame from the buffer, or None if more bytes are needed (the buffer is left intact)."""
        b = self.buf
        if len(b) < 2:
            return None
        fin, opcode = bool(b[0] & 0x80), b[0] & 0x0F
        masked, n, pos = bool(b[1] & 0x80), b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        mask = b""
        if masked:
            if len(b) < pos + 4:
                return None
            mask, pos = b[pos:pos + 4], pos + 4
        if len(b) < pos + n:
            return None
        payload = b[pos:pos + n]
        if masked:
            payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
        self.buf = b[pos + n:]
        return fin, opcode, payload

    def receive(self, timeout: float) -> Optional[Any]:
        """The next message (text decoded as JSON when possible; binary frames are skipped), or None on timeout.

        Raises ``ConnectionError`` when the connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    return None
                if not chunk:
                    self.closed = True
                    raise ConnectionError("the server closed the websocket")
                self.buf += chunk
                continue
            fin, opcode, payload = frame
            if opcode == 0x8:
                self.closed = True
                raise ConnectionError("the server closed the websocket")
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2, 0x0):
                self._fragments.append(payload)
                if opcode != 0x0:
                    self._kind = opcode
                if not fin:
                    continue
                data, self._fragments = b"".join(self._fragments), []
                if getattr(self, "_kind", 0x1) != 0x1:
                    continue  # binary: preview images
                try:
                    return loads_json(data.decode("utf-8"))
                except ValueError:  # not JSON, or nested too deeply to read: not a message of ComfyUI's
                    continue

    def close(self) -> None:
        if not self.closed:
            try:
                self._send(0x8, struct.pack("!H", 1000))
            except OSError:
                pass
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def websocket_url(server: str, client_id: str) -> str:
    parts = urllib.parse.urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    base = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"{base}/ws", f"clientId={client_id}", ""))
