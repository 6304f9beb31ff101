"""ScriptEncode: the multimodal script in, ``MD_SCRIPT`` and ``MD_SCRIPT_EMBEDS`` out.

The node is thin: parsing and validation are ``moviedreamer_core.script``, the numeric encoding is
``moviedreamer_core.script_encoding``; this module reads the host inputs, builds the encoders from host
models and reports progress. The script is validated at prompt time (``validate_inputs``), so a broken
script is a node error naming the field before anything runs.

Validation runs off the server's event loop (``off_the_loop``), so a large script being checked never
stalls the server, and its problems are reported once per prompt, under the ``script`` input
(``ReportedOnce``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from comfy_api.latest import io, ui

from ..moviedreamer_core.identity.base import NoFaceFoundError
from ..moviedreamer_core.paths import UnsafePathError, resolve_inside
from ..moviedreamer_core.script import ScriptError, ScriptIssue, load_script, parse_script_text
from ..moviedreamer_core.script.parsing import read_script_file
from ..moviedreamer_core.script.problems import shown
from ..moviedreamer_core.script_encoding import ReferenceImageError, encode_script
from . import host, wire_types
from .choices import ReportedOnce, first_problem, validated_widgets_only
from .face_embedders import (FACE_EMBEDDER_CHOICES, FACE_EMBEDDER_TOOLTIP, clip_vision_face_encoder,
                             clip_vision_token_encoder, make_face_embedder)
from .text_encoding import CONNECTED_CLIP, TEXT_ENCODER_CHOICES, builtin_text_encoder, host_text_encoder

log = logging.getLogger(__name__)

NO_FILE = "(none: use the text above)"
SCRIPT_EXTENSIONS = (".yaml", ".yml", ".json")

EXAMPLE_SCRIPT = """\
# A MovieDreamer script (YAML or JSON). Reference photos: file names in ComfyUI's input folder,
# e.g. references: [ava_front.png, ava_side.png], or indices into the IMAGE batch: references: [0, 1].
title: The Lighthouse Keepers
style: hand-painted watercolour, soft morning light
characters:
  - name: Ava
    description: a young woman with short red hair and a green raincoat
  - name: Bo
    description: an old fisherman with a white beard and a blue cap
shots:
  - id: s1
    scene: a white lighthouse on a cliff at dawn, stormy sea
    action: Ava climbs the steep path towards the lighthouse.
    characters: [Ava]
    camera: wide
    duration: 4
  - id: s2
    scene: the lamp room at the top of the lighthouse
    action: [Bo turns from the window., Ava hands Bo a brass lantern.]
    characters: [Ava, Bo]
    camera: medium
    duration: 6
    transition: dissolve
"""


_listings: dict = {}


def script_files() -> list[str]:
    """Script files the user can pick: ``.yaml``/``.yml``/``.json`` anywhere under the input folder. Listed once,
    then kept current by checking the folders' modification times (``moviedreamer_core/folder_listing.py``): the host
    asks for these choices on every queued prompt."""
    from ..moviedreamer_core.folder_listing import FolderListing

    root = host.input_directory()
    listing = _listings.get(root) or _listings.setdefault(root, FolderListing(root, SCRIPT_EXTENSIONS))
    return [NO_FILE] + listing.files()


@validated_widgets_only
class ScriptEncode(io.ComfyNode):
    """Parse, validate and encode a movie script (paper section 3.2)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ScriptEncode",
            display_name="Script Encode (MovieDreamer)",
            category=wire_types.CATEGORY,
            description=(
                "Reads a movie script (JSON or YAML), checks it completely, and turns it into numbers: one "
                "sentence embedding per keyframe text from the text encoder, a face-identity bank per "
                "character from its reference photos, and (with CLIP Vision) the characters' reference tokens."
            ),
            inputs=[
                io.String.Input(
                    "script", multiline=True, default=EXAMPLE_SCRIPT,
                    tooltip="The movie script: title, style, characters (name, description, reference photos) and "
                    "shots (id, scene, action, characters, camera, duration, keyframes, transition). JSON or YAML. "
                    "Ignored when a script file is chosen below.",
                ),
                io.Combo.Input(
                    "script_file", options=script_files(), default=NO_FILE,
                    tooltip="Optional: a .yaml/.yml/.json script file from ComfyUI's input folder. When chosen it is "
                    "used instead of the text above.",
                ),
                io.Clip.Input(
                    "clip", optional=True,
                    tooltip="The text encoder (from your checkpoint loader). Its pooled output gives one embedding per "
                    "sentence of the script: each keyframe's action, each scene, the style, each character description. "
                    "Not needed when text_encoder is the built-in MiniLM.",
                ),
                io.Combo.Input(
                    "face_embedder", options=FACE_EMBEDDER_CHOICES, default=FACE_EMBEDDER_CHOICES[0],
                    tooltip=FACE_EMBEDDER_TOOLTIP,
                ),
                io.Image.Input(
                    "images", optional=True,
                    tooltip="Optional batch of character reference photos. A character lists them by index in its "
                    "references (0 is the first image of this batch).",
                ),
                io.Combo.Input(
                    "text_encoder", options=TEXT_ENCODER_CHOICES, default=CONNECTED_CLIP, optional=True,
                    tooltip="Where the sentence embeddings come from: the connected CLIP (the usual choice), or the "
                    "built-in all-MiniLM-L6-v2 sentence encoder (installed with the pack, CPU; the planner must have "
                    "been trained in the same text space, e.g. on a dataset built with --text-encoder minilm).",
                ),
                io.ClipVision.Input(
                    "clip_vision", optional=True,
                    tooltip="Optional CLIP Vision model. When connected, each character's reference photos are also "
                    "encoded into the keyframe token space (its reference tokens, used for zero-shot and few-shot "
                    "planning), and each reference's face crop into CLIP Vision hidden states (read by IP-Adapter "
                    "FaceID plus renderers); it is required by the clip_vision_crop face embedder.",
                ),
            ],
            outputs=[
                wire_types.Script.Output("script_out", display_name="script", tooltip="The parsed, validated script."),
                wire_types.ScriptEmbeds.Output(
                    "script_embeds", display_name="script_embeds",
                    tooltip="Sentence embeddings per keyframe, identity bank per character, reference tokens, the "
                    "texts for the renderer, and the declared text/identity/token spaces.",
                ),
            ],
        )

    @classmethod
    async def validate_inputs(cls, **inputs):
        """Prompt-time check: a broken script is a node error naming every bad field before anything runs.

        Index references cannot be checked here (the IMAGE batch does not exist yet); ``execute`` does it.
        The check runs in a worker thread, so the server answers other requests meanwhile. ``inputs`` comes
        in the order the host reports errors in (see ``ReportedOnce``).
        """
        answer = await off_the_loop(_prompt_time_check, cls, dict(inputs))
        if answer is True:
            return True
        place, text = answer
        return ReportedOnce(text, list(inputs), place)

    @classmethod
    def fingerprint_inputs(cls, script=None, script_file=None, **kwargs):
        """Re-run when the script file or a reference file changes on disk, not only when the text does."""
        h = hashlib.sha256(repr((script, script_file)).encode())
        try:
            text, _ = _script_text(script or "", script_file or NO_FILE)
            h.update(text.encode())
            raw = parse_script_text(text)
            root = host.input_directory()
            for ch in raw.get("characters", []) if isinstance(raw, dict) else []:
                for ref in ch.get("references", []) if isinstance(ch, dict) else []:
                    if isinstance(ref, str):
                        path = os.path.join(root, ref)
                        if os.path.isfile(path):
                            st = os.stat(path)
                            h.update(f"{ref}:{st.st_size}:{st.st_mtime_ns}".encode())
        except (ScriptError, OSError, ValueError):
            pass
        return h.hexdigest()

    @classmethod
    @host.pack_threads
    def execute(cls, script, script_file, face_embedder, clip=None, images=None, text_encoder=None,
                clip_vision=None) -> io.NodeOutput:
        text, source = _script_text(script, script_file)
        input_dir = host.input_directory()
        parsed = load_script(text, input_dir=input_dir, image_count=0 if images is None else int(images.shape[0]))
        from ..moviedreamer_core.identity.cache import IdentityCache

        embedder = make_face_embedder(face_embedder, clip_vision)
        token_encoder = clip_vision_token_encoder(clip_vision) if clip_vision is not None else None
        face_encoder = clip_vision_face_encoder(clip_vision) if clip_vision is not None else None
        progress = host.Progress()
        try:
            embeds = encode_script(
                parsed,
                _text_encoder(clip, text_encoder or CONNECTED_CLIP),
                embedder,
                input_dir=input_dir,
                batch=images,
                identity_cache=IdentityCache(host.cache_directory()),
                token_encoder=token_encoder,
                face_encoder=face_encoder,
                progress=progress,
            )
        except (ReferenceImageError, NoFaceFoundError) as e:
            raise ValueError(f"ScriptEncode ({source}): {e}") from e
        for warning in embeds.warnings:
            log.warning("MovieDreamer ScriptEncode: %s", warning)
        return io.NodeOutput(parsed, embeds, ui=ui.PreviewText(
            embeds.summary() + "".join(f"\nWARNING: {w}" for w in embeds.warnings)))


def _prompt_time_check(cls, inputs: dict):
    """``True``, or ``(input name, report)`` for the first input that is wrong."""
    choices = first_problem(cls, {k: v for k, v in inputs.items() if k != "script_file"})
    if choices is not True:
        return choices[0], shown(choices[1], 400)
    script, script_file = inputs.get("script"), inputs.get("script_file")
    if script is None and script_file in (None, NO_FILE):
        return True  # the script arrives through a link; checked when the node runs
    try:
        text, _ = _script_text(script or "", script_file or NO_FILE)
        load_script(text, input_dir=host.input_directory())
    except ScriptError as e:
        return ("script_file" if all(i.path == "script_file" for i in e.issues) else "script"), str(e)
    return True


#: Script checks run here, off the server's event loop, one at a time: a check is pure Python, so a second
#: thread would not finish sooner (the GIL) and would only make the event loop wait longer for its turn.
_VALIDATION_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moviedreamer-validate")


async def off_the_loop(fn, *args):
    """Run ``fn(*args)`` in the validation threads and await it: the event loop stays free meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_VALIDATION_POOL, functools.partial(fn, *args))


def _text_encoder(clip, choice: str):
    if choice == CONNECTED_CLIP:
        if clip is None:
            raise ValueError("ScriptEncode: connect a CLIP text encoder, or choose the built-in text_encoder")
        return host_text_encoder(clip)
    return builtin_text_encoder(choice)


def _script_text(script: str, script_file: str) -> tuple[str, str]:
    """The script text and its source; a chosen file must be inside the input folder, exist, be UTF-8 text and
    be within the size limit (checked by its size, before it is read)."""
    if script_file and script_file != NO_FILE:
        try:
            path = resolve_inside(host.input_directory(), script_file)
        except UnsafePathError as e:
            raise ScriptError([ScriptIssue("script_file", shown(str(e), 200))])
        if not os.path.isfile(path):
            raise ScriptError([ScriptIssue("script_file", f'"{shown(script_file)}" not found in the input folder')])
        return read_script_file(path, script_file), f"input/{shown(script_file)}"
    return script, "script text"
