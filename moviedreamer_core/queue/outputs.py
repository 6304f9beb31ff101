"""What a finished run wrote: files from ``/history`` outputs and from paths the nodes' texts name."""

from __future__ import annotations

import os
import re
from typing import Optional

from .messages import _id_key, node_label


FILE_OUTPUT_KEYS = ("images", "gifs", "videos", "video", "audio", "animated", "files", "3d")

MEDIA_EXTENSIONS = ("mp4", "webm", "mov", "mkv", "avi", "gif", "png", "jpg", "jpeg", "webp", "wav", "flac", "mp3", "ogg")

_TEXT_PATH = re.compile(r"((?:[A-Za-z]:)?[\\/][^\n]*?\.(?:%s))(?=$|\s|[,;)\]])" % "|".join(MEDIA_EXTENSIONS), re.I)


def output_files(entry: dict, output_dir: Optional[str] = None) -> list[str]:
    """Files named by the run's outputs: ``output/<subfolder>/<name>`` (absolute under ``output_dir`` when
    given) for images/gifs/videos/audio entries (previews in the server's temp folder left out), then absolute media
    paths named in the nodes' texts."""
    files: list[str] = []
    outputs = entry.get("outputs") or {}
    for nid in sorted(outputs, key=_id_key):
        out = outputs[nid] or {}
        for key in FILE_OUTPUT_KEYS:
            for item in out.get(key) or []:
                if not isinstance(item, dict) or not item.get("filename"):
                    continue
                kind = item.get("type") or "output"
                if kind == "temp":  # a Preview Image's copy, gone when the server starts again: not a file the run made
                    continue
                rel = "/".join(p for p in (item.get("subfolder") or "", item["filename"]) if p)
                if kind == "output" and output_dir:
                    path = os.path.join(output_dir, *rel.split("/"))
                else:
                    path = f"{kind}/{rel}"
                if path not in files:
                    files.append(path)
        for text in _texts(out):
            for m in _TEXT_PATH.finditer(text):
                if m.group(1) not in files:
                    files.append(m.group(1))
    return files


def _texts(out: dict) -> list[str]:
    texts = []
    for item in out.get("text") or []:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, (list, tuple)):
            texts.extend(str(x) for x in item if isinstance(x, str))
    return texts


def output_texts(entry: dict, prompt: dict) -> list[str]:
    lines = []
    outputs = entry.get("outputs") or {}
    for nid in sorted(outputs, key=_id_key):
        for text in _texts(outputs[nid] or {}):
            lines.append(f"# {node_label(prompt, nid)}: " + text.replace("\n", "\n#   "))
    return lines


def history_error(entry: dict) -> Optional[dict]:
    for item in (entry.get("status") or {}).get("messages") or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and item[0] == "execution_error":
            return item[1]
    return None


def history_interrupted(entry: dict) -> bool:
    return any(isinstance(m, (list, tuple)) and m and m[0] == "execution_interrupted"
               for m in (entry.get("status") or {}).get("messages") or [])
