"""The movie project folder: where every stage writes its results as soon as they exist.

``<output>/moviedreamer/<project>/`` holds ``manifest.json`` (script hash, per-keyframe
and per-shot status, seeds, parameters, file names), ``keyframes/`` (one image per keyframe, written the
moment it is rendered), ``shots/`` (one video per shot) and the assembled movie. A rerun with the same inputs
finds finished work here and skips it; nothing already rendered is lost when a later step fails.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a crash or
a cancel leaves either the old file or the new one, never half of one. A keyframe counts as done only when
its manifest entry carries the same *signature* (a hash of everything that determines its pixels) and its
image file still reads.

The folder follows the current script. When a stage starts it moves aside what the script no longer has
(``retire_keyframes``, ``retire_shots``): keyframes past the storyboard's end, shots past the script's end or
filed under another shot's id (a re-ordered script), and an assembled movie made of other shots go into
``stale/<time>/`` under their own relative names and leave the manifest. Nothing is deleted, and a finished
rerun leaves a folder whose manifest, files and movie agree. Files of keyframes and shots the script still
has stay where they are: their signatures decide whether they are reused.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from .files import atomic_write_bytes
from .paths import resolve_inside, safe_folder_name

PROJECT_FORMAT_VERSION = 1
PROJECTS_DIR = "moviedreamer"
#: Where files the current script no longer has are moved (``stale/<YYYYmmdd-HHMMSS>/keyframes/...``).
STALE_DIR = "stale"
_KEYFRAME_FILE = re.compile(r"^keyframe_(\d{5,})\.(?:png|latent\.safetensors)$")
_SHOT_FILE = re.compile(r"^shot_(\d{5,})(?:_.*\.mp4|\.preview\.safetensors)$")


class MovieProject:
    """One movie's folder under the host's output directory."""

    def __init__(self, output_dir: str, name: str):
        self.name = safe_folder_name(name, fallback="movie")
        self.root = resolve_inside(output_dir, f"{PROJECTS_DIR}/{self.name}")
        os.makedirs(os.path.join(self.root, "keyframes"), exist_ok=True)
        self.manifest_path = os.path.join(self.root, "manifest.json")
        self.manifest = self._read_manifest()

    # ------------------------------------------------------------------------------------ manifest

    def _read_manifest(self) -> dict:
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and data.get("format") == PROJECT_FORMAT_VERSION:
                data.setdefault("keyframes", {})
                data.setdefault("shots", {})
                return data
        except (OSError, ValueError):
            pass
        return {"format": PROJECT_FORMAT_VERSION, "project": self.name, "keyframes": {}, "shots": {}}

    def save_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8"))

    def set_script(self, script_hash: str, title: str) -> None:
        """Record which script this project renders. Entries of an earlier version of the script stay: each one's
        signature says whether it still fits, so an edit re-renders only what it changed."""
        self.manifest["script_hash"] = script_hash
        self.manifest["title"] = title

    # ------------------------------------------------------------------------------- stale work

    def _move_aside(self, rels: Iterable[str]) -> list[str]:
        """Move files (relative names) into one ``stale/<time>/`` folder, keeping their relative paths."""
        rels = [r for r in dict.fromkeys(rels) if os.path.isfile(os.path.join(self.root, r))]
        if not rels:
            return []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = os.path.join(self.root, STALE_DIR, stamp)
        n = 1
        while os.path.exists(dest):
            n += 1
            dest = os.path.join(self.root, STALE_DIR, f"{stamp}-{n}")
        for rel in rels:
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(self.root, rel), target)
        return [f"{STALE_DIR}/{os.path.basename(dest)}/{rel}" for rel in rels]

    def retire_keyframes(self, count: int) -> list[str]:
        """The storyboard now has ``count`` keyframes: the entries and files of keyframes from ``count`` on move to
        ``stale/`` and leave the manifest. Returns the new places of the moved files."""
        gone = [k for k in self.manifest["keyframes"] if not k.isdigit() or int(k) >= count]
        files = []
        for name in _listdir(os.path.join(self.root, "keyframes")):
            found = _KEYFRAME_FILE.match(name)
            if found and int(found.group(1)) >= count:
                files.append(f"keyframes/{name}")
        for k in gone:
            self.manifest["keyframes"].pop(k)
        moved = self._move_aside(files)
        if gone or moved:
            self.save_manifest()
        return moved

    def retire_shots(self, shot_files: dict[int, str]) -> list[str]:
        """The script's shots now are ``{shot index: its file}``: shots past the end, and shots filed under another
        shot's name (the script was re-ordered or an id changed), move to ``stale/`` with their preview sidecars and
        leave the manifest; so does an assembled movie made of other shots. Returns the new places of the files."""
        files, gone = [], []
        for key, entry in self.manifest["shots"].items():
            index = int(key) if key.isdigit() else -1
            if shot_files.get(index) != entry.get("file"):
                gone.append(key)
                files += [entry.get("file", ""), self.sidecar_file(index)]
        expected = set(shot_files.values()) | {self.sidecar_file(i) for i in shot_files}
        for name in _listdir(os.path.join(self.root, "shots")):
            if _SHOT_FILE.match(name) and f"shots/{name}" not in expected:
                files.append(f"shots/{name}")
        for key in gone:
            self.manifest["shots"].pop(key)
        movie = self.manifest.get("movie")
        ordered = [shot_files[i] for i in sorted(shot_files)]
        if movie and movie.get("shots") != ordered:
            files.append(movie.get("file", ""))
            self.manifest.pop("movie")
        moved = self._move_aside(f for f in files if f)
        if gone or moved or (movie and "movie" not in self.manifest):
            self.save_manifest()
        return moved

    # ----------------------------------------------------------------------------------- keyframes

    # --------------------------------------------------------------------------------------- shots

    def shot_file(self, index: int, shot_id: str) -> str:
        return f"shots/shot_{index:05d}_{safe_folder_name(shot_id, fallback='shot', max_length=40)}.mp4"

    def shot_entry(self, index: int, signature: str) -> Optional[dict]:
        """The manifest entry of a shot finished with this signature (its file is not checked here), or ``None``."""
        entry = self.manifest["shots"].get(str(index))
        if not entry or entry.get("signature") != signature or entry.get("status") != "done":
            return None
        return entry

    def record_shot(self, index: int, rel: str, signature: str, info: dict) -> None:
        """Record a finished shot, with its file's size and modification time (``shot_unchanged``)."""
        st = os.stat(os.path.join(self.root, rel))
        self.manifest["shots"][str(index)] = {"status": "done", "file": rel, "signature": signature,
                                              "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, **info}
        self.save_manifest()

    def shot_unchanged(self, index: int, signature: str) -> bool:
        """Recorded with this signature and its file untouched since (same size and modification time): the
        cheap check a rerun makes before trusting a shot without decoding it (``shot_done`` decodes)."""
        entry = self.shot_entry(index, signature)
        if entry is None or "bytes" not in entry:
            return False
        try:
            st = os.stat(os.path.join(self.root, entry["file"]))
        except OSError:
            return False
        return st.st_size == entry["bytes"] and st.st_mtime_ns == entry["mtime_ns"]

    def sidecar_file(self, index: int) -> str:
        return f"shots/shot_{index:05d}.preview.safetensors"

    def save_shot_sidecar(self, index: int, signature: str, preview: list, last: np.ndarray) -> None:
        """A shot's small preview frames and its decoded last frame (for the next shot's dissolve), so a rerun
        need not decode the shot again."""
        from safetensors.numpy import save

        tensors = {"last": np.ascontiguousarray(last)}
        if preview:
            tensors["preview"] = np.ascontiguousarray(np.stack(preview))
        atomic_write_bytes(os.path.join(self.root, self.sidecar_file(index)), save(tensors, {"signature": signature}))

    def shot_sidecar(self, index: int, signature: str) -> Optional[dict]:
        """``{"preview": [small frames], "last": frame}`` kept for this signature, or ``None``."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.path.join(self.root, self.sidecar_file(index)), framework="np") as f:
                if (f.metadata() or {}).get("signature") != signature:
                    return None
                preview = list(f.get_tensor("preview")) if "preview" in f.keys() else []
                return {"preview": preview, "last": f.get_tensor("last")}
        except (OSError, SafetensorError, KeyError):
            return None

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def keyframe_file(self, index: int) -> str:
        return f"keyframes/keyframe_{index:05d}.png"

    def keyframe_done(self, index: int, signature: str) -> bool:
        entry = self.manifest["keyframes"].get(str(index))
        if not entry or entry.get("signature") != signature or entry.get("status") != "done":
            return False
        return self.load_keyframe(index) is not None

    def load_keyframe(self, index: int) -> Optional[np.ndarray]:
        path = os.path.join(self.root, self.keyframe_file(index))
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB")).copy()
        except (OSError, ValueError):
            return None

    def save_keyframe(self, index: int, image: np.ndarray, signature: str, info: dict, latent=None) -> str:
        """Write keyframe ``index`` (``uint8 [H, W, 3]``), optionally its latent (a tensor, as safetensors, so a
        rerun need not encode the image again), and its manifest entry; returns the file name."""
        import io

        rel = self.keyframe_file(index)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        if latent is not None:
            from safetensors.torch import save

            atomic_write_bytes(os.path.join(self.root, self.latent_file(index)),
                               save({"latent": latent.detach().float().cpu().contiguous()}, {"signature": signature}))
        atomic_write_bytes(os.path.join(self.root, rel), buf.getvalue())
        self.manifest["keyframes"][str(index)] = {"status": "done", "file": rel, "signature": signature, **info}
        self.save_manifest()
        return rel

    def latent_file(self, index: int) -> str:
        return f"keyframes/keyframe_{index:05d}.latent.safetensors"

    def load_keyframe_latent(self, index: int, signature: str):
        """The latent saved with keyframe ``index`` if it was saved for this ``signature``, else ``None``."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.path.join(self.root, self.latent_file(index)), framework="pt") as f:
                if (f.metadata() or {}).get("signature") != signature:
                    return None
                return f.get_tensor("latent")
        except (OSError, SafetensorError, KeyError):
            return None


def _listdir(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []
