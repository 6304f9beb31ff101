"""A participant's results as bytes, and those bytes as an AUDIO waveform for ComfyUI-Distributed's collector.

The collector carries two things from a worker to the master: IMAGE rows (as 8-bit PNG) and one AUDIO waveform
(float32, sent losslessly, concatenated master first and then the workers in their order). Files (keyframe PNGs,
shot videos, their manifest entries) travel in the waveform: three bytes per sample, as an integer below 2**24,
which float32 holds exactly. Each participant's payload starts on a sample boundary and says its own length, so
the master reads the concatenation back payload by payload.

A payload is ``MAGIC``, the header's length (8 bytes, little-endian), the header (JSON), then the bytes of every
file the header marks as sent, in order. Files on a folder the master shares are listed (name, size, SHA-256)
but not sent. Everything read back is checked and bounded: names must be a project's keyframe or shot files,
sizes and hashes must match, and the totals are capped.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from ..project import project_file
from ..text_files import loads_json

MAGIC = b"MDPAYLD1"
#: Most bytes one run gathers (the collector's own audio limit is 256 MiB of float32 per participant).
MAX_TOTAL_BYTES = 1 << 31
MAX_HEADER_BYTES = 32 << 20
MAX_FILES = 200_000
SAMPLE_RATE = 44100


@dataclass
class Payload:
    """One participant's results: ``header`` (JSON-able) and ``files`` ``{relative name: bytes}`` that were sent."""

    header: dict
    files: dict = field(default_factory=dict)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(payload: Payload) -> bytes:
    """Frame a payload as bytes (see the module docstring)."""
    entries = payload.header.get("files", [])
    blobs = []
    for entry in entries:
        if entry.get("sent"):
            data = payload.files[entry["name"]]
            if len(data) != entry["size"]:
                raise ValueError(f"{entry['name']}: {len(data)} bytes, the header says {entry['size']}")
            blobs.append(data)
    header = json.dumps(payload.header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs])


def _refuse(index: int, what: str) -> ValueError:
    return ValueError(f"results: payload {index + 1} {what}")


def _file_entries(header, index: int) -> list[dict]:
    """The header's ``files`` list, every entry checked: a project's keyframe or shot file, a size, a SHA-256 and
    whether its bytes follow; each name once."""
    entries = header.get("files", [])
    if not isinstance(entries, list):
        raise _refuse(index, f"has a header whose files field is not a list ({type(entries).__name__})")
    if len(entries) > MAX_FILES:
        raise _refuse(index, f"lists more than {MAX_FILES} files")
    seen = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _refuse(index, f"has a files[{i}] that is not an object ({str(entry)[:40]!r})")
        name, size, digest, sent = entry.get("name"), entry.get("size"), entry.get("sha256"), entry.get("sent", False)
        # the files a payload may carry are a project's keyframes, their latents, shots and their preview sidecars,
        # named as the project names them; the payload had a pattern of its own, which allowed no space in a shot's id,
        # so a worker's shots/shot_00004_opening shot.mp4 was refused and the run failed
        if project_file(name) is None:
            raise _refuse(index, f"files[{i}]: {str(name)[:80]!r} is not a keyframe or shot file of a project")
        if name in seen:
            raise _refuse(index, f"files[{i}]: {name} is listed twice")
        seen.add(name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > MAX_TOTAL_BYTES:
            raise _refuse(index, f"files[{i}]: {name} has a bad size ({str(size)[:40]!r})")
        if not isinstance(digest, str) or len(digest) > 128:
            raise _refuse(index, f"files[{i}]: {name} has a bad sha256 ({str(digest)[:80]!r})")
        if not isinstance(sent, bool):
            raise _refuse(index, f"files[{i}]: {name} has a sent field that is not true or false")
    return entries


def decode_all(data: bytes) -> list[Payload]:
    """Every payload in ``data`` (several concatenated, each padded to a multiple of three bytes). The framing and
    the files list are checked here (every message names the ``results`` input); ``results.check_payloads`` checks
    the rest of a header before anything is written."""
    out, pos = [], 0
    if len(data) > MAX_TOTAL_BYTES + 64:
        raise ValueError(f"results: gathered results of {len(data)} bytes exceed the limit of {MAX_TOTAL_BYTES}")
    while pos < len(data):
        index = len(out)
        if data[pos:pos + len(MAGIC)] != MAGIC:
            if not any(data[pos:]):  # padding, or a participant that sent silence
                break
            raise ValueError(f"results: no MovieDreamer payload at byte {pos} (was the collector's audio "
                             "input connected to ShotAnimate's results?)")
        start = pos + len(MAGIC) + 8
        if start > len(data):
            raise _refuse(index, f"is cut short after its magic (at byte {pos}: no header length)")
        (n,) = struct.unpack_from("<Q", data, pos + len(MAGIC))
        if n > MAX_HEADER_BYTES:
            raise _refuse(index, f"declares a header of {n} bytes, more than {MAX_HEADER_BYTES}")
        if start + n > len(data):
            raise _refuse(index, f"declares a header of {n} bytes, but only {len(data) - start} bytes follow")
        try:
            header = loads_json(data[start:start + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise _refuse(index, "has a header that is not UTF-8 text") from None
        except ValueError as e:
            raise _refuse(index, f"has a header that is not JSON ({str(e)[:80]})") from None
        if not isinstance(header, dict):
            raise _refuse(index, f"has a header that is not an object ({type(header).__name__})")
        entries = _file_entries(header, index)
        pos = start + n
        files = {}
        for entry in entries:
            name, size = entry["name"], entry["size"]
            if entry.get("sent"):
                blob = data[pos:pos + size]
                if len(blob) != size or sha256(blob) != entry["sha256"]:
                    raise _refuse(index, f"files: {name} arrived damaged (size or SHA-256 differ)")
                files[name] = blob
                pos += size
        out.append(Payload(header, files))
        pos = -(-pos // 3) * 3  # the next payload starts on a sample boundary
    return out


def to_waveform(data: bytes) -> np.ndarray:
    """Bytes as float32 samples ``[1, 1, ceil(len / 3)]``, three bytes each (zero-padded)."""
    padded = data + b"\0" * (-len(data) % 3)
    triples = np.frombuffer(padded, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    return values.astype(np.float32).reshape(1, 1, -1)


#: Samples checked and unpacked at a time by ``from_waveform``: its temporary arrays stay a few MB whatever the size.
WAVEFORM_CHUNK = 1 << 20


def from_waveform(waveform) -> bytes:
    """The bytes ``to_waveform`` packed (concatenated waveforms give concatenated payloads).

    Checked and unpacked a chunk at a time into one buffer, the bytes taken from each sample's little-endian
    integer: whole-array temporaries (a floor, a stack of three integer arrays) took about 9 times the results' size
    at once, some 19 GB for the 2 GB a run may gather (an audit)."""
    values = np.asarray(waveform, dtype=np.float32).reshape(-1)
    out = bytearray(3 * values.size)
    for start in range(0, values.size, WAVEFORM_CHUNK):
        chunk = values[start:start + WAVEFORM_CHUNK]
        if chunk.min() < 0 or chunk.max() >= 1 << 24 or not np.all(chunk == np.floor(chunk)):
            raise ValueError("results: the audio does not hold MovieDreamer payloads (values are not bytes)")
        ints = chunk.astype("<u4")
        out[3 * start:3 * (start + chunk.size)] = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return bytes(out)
