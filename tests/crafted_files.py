"""Files made to test refusals: a small PNG whose header claims to be huge (a decompression bomb as Pillow sees it).

Shared by the core and host tests of hostile scripts (issue 20)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_claiming(width: int, height: int) -> bytes:
    """A 16x16 PNG whose header claims ``width`` x ``height`` pixels (the IHDR chunk rewritten, its CRC fixed)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    return bytes(data)
