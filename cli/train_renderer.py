"""Train a MovieDreamer renderer from a folder of keyframes, with ComfyUI imported as a library (no server).

The renderer trains over a frozen UNet whose noise schedule and weights are ComfyUI's, so this script loads the
host the way ``main.py`` does (its folders, its ``extra_model_paths.yaml``, its model management), loads the
checkpoint and CLIP Vision with the host's own loaders, and runs exactly what the MovieDreamerTrainRenderer node
runs (``renderer_train_node.train_renderer``). The file lands in ``models/moviedreamer`` like the node's.

    python cli/train_renderer.py --comfyui ~/ComfyUI --checkpoint sd_xl_base_1.0.safetensors \\
        --clip-vision CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors --images my_keyframes/ --size 1024x576 \\
        --steps 3000 --save-name my_renderer

Captions: ``<image>.txt`` next to each image, else ``--caption`` for every image. Characters (for the paper's
identity randomisation: a sample's face identity is drawn from another photo of its character): images in a
sub-folder show the character the sub-folder is named after (``my_keyframes/Eileen/*.png``); images at the top
level show nobody known. Without sub-folders the photos are grouped by clustering their face embeddings
(``--character-threshold``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

try:  # a submodule of the pack (tests), or a script run from anywhere
    from .ctrl_c import CtrlC, StoppedByUser
    from .host_library import PACK_MODULE, core_module, import_host, import_pack
except ImportError:  # a script: its folder is on sys.path, except in isolated mode (python -I)
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # appended: it shadows nothing
    from ctrl_c import CtrlC, StoppedByUser
    from host_library import PACK_MODULE, core_module, import_host, import_pack

_types = core_module("argument_types")
_text_files = core_module("text_files")
number, seed, whole_number, frame_size = _types.number, _types.seed, _types.whole_number, _types.frame_size
_RANGES = core_module("renderer_training_ranges").RANGES
_CHOICES = core_module("renderer_training_ranges").CHOICES


def _ranged(name: str) -> dict:
    """``type`` and ``default`` of the flag for the node's input ``name``: the node's range (one table for both)."""
    r = _RANGES[name]
    return {"type": (whole_number if r.whole else number)(r.minimum, r.maximum), "default": r.default}


def _chosen(name: str) -> dict:
    """``choices`` and ``default`` of the flag for the node's combo input ``name`` (the same table as the node's)."""
    c = _CHOICES[name]
    return {"choices": list(c.options), "default": c.default}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train_renderer.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="the ComfyUI folder (default: $COMFYUI_PATH)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file name in models/checkpoints (or a path)")
    p.add_argument("--clip-vision", required=True, help="CLIP Vision file name in models/clip_vision (or a path)")
    p.add_argument("--images", required=True, help="folder of keyframe images (.png/.jpg/.webp), captions in <image>.txt")
    p.add_argument("--caption", default="", help="caption for images without a .txt file")
    p.add_argument("--size", type=frame_size(), default=(512, 512),
                   help="WIDTHxHEIGHT the keyframes are cropped and resized to (multiples of 8, default 512x512)")
    p.add_argument("--face-embedder", **_chosen("face_embedder"),
                   help="the identity embedder (the one ScriptEncode will use; default %(default)s)")
    p.add_argument("--token-source", **_chosen("token_source"), help="the renderer's token input (default %(default)s)")
    p.add_argument("--steps", **_ranged("steps"))
    p.add_argument("--batch-size", **_ranged("batch_size"))
    p.add_argument("--learning-rate", **_ranged("learning_rate"))
    p.add_argument("--augmentations", **_ranged("augmentations"))
    p.add_argument("--identity-noise", **_ranged("identity_noise"))
    p.add_argument("--character-threshold", **_ranged("character_threshold"),
                   help="without character sub-folders: cosine distance within which faces are one character (0: none)")
    p.add_argument("--context-tokens", **_ranged("context_tokens"))
    p.add_argument("--identity-tokens", **_ranged("identity_tokens"))
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--save-name", default="moviedreamer_renderer", help="file name in models/moviedreamer")
    p.add_argument("--save-dir", default=None, help="write the file into this folder instead of ComfyUI's "
                   "models/moviedreamer (created when missing)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    return p.parse_args(argv)  # the numbers: the node's ranges (moviedreamer_core/renderer_training_ranges.py)


def keyframe_files(folder: str) -> tuple[list[Path], list[str]]:
    """Every image in ``folder`` (sorted) and then in each of its sub-folders (sorted by name), with the character
    each shows: the sub-folder's name, or ``""`` (nobody known) at the top level."""
    root = Path(folder)
    if not root.is_dir():
        raise SystemExit(f"--images: {folder} is not a folder")
    images = lambda d: sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)  # noqa: E731
    files = [(f, "") for f in images(root)]
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files += [(f, sub.name) for f in images(sub)]
    return [f for f, _ in files], [c for _, c in files]


def load_characters(folder: str):
    """One character name per image of ``load_keyframes`` (its sub-folder), or ``None`` when the folder has no
    character sub-folders (the photos are then grouped by clustering their faces)."""
    _, characters = keyframe_files(folder)
    return characters if any(characters) else None


def load_keyframes(folder: str, size: tuple[int, int], default_caption: str = ""):
    """``(IMAGE [N, H, W, 3], captions)``: every image in ``folder`` and its character sub-folders (``keyframe_files``),
    centre-cropped to the aspect of ``size`` and resized; its caption from ``<name>.txt`` beside it, else
    ``default_caption``."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    files, _ = keyframe_files(folder)
    if not files:
        raise SystemExit(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    images, captions = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                fitted = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), size, Image.LANCZOS)
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # damaged, not an image, or too large
            raise SystemExit(f"{f}: cannot be read as an image ({e}); fix or remove it") from None
        images.append(torch.from_numpy(np.array(fitted)).float().div(255))
        captions.append(_caption(f.with_suffix(".txt"), default_caption))
    return torch.stack(images), captions


#: The longest caption file read (the text encoders read 77 tokens; a larger file is not a caption).
MAX_CAPTION_BYTES = 64 * 1024


def _caption(path: Path, default: str) -> str:
    """The caption in ``path`` (UTF-8 text, ``text_files.read_text_file``), or ``default`` when there is none; a
    caption that is not UTF-8 text, is larger than ``MAX_CAPTION_BYTES`` or cannot be read stops the command naming
    the file."""
    if not path.is_file():
        return default
    try:
        return _text_files.read_text_file(str(path), MAX_CAPTION_BYTES).strip()
    except _text_files.TextFileError as e:
        advice = {"size": "; a caption is a sentence or two", "encoding": "; save it as UTF-8", "unreadable": "; fix or remove it"}
        raise SystemExit(f"{path}: the caption {e.said_with(advice)}") from None


def _model_path(folder_paths, kind: str, name: str) -> str:
    if os.path.isfile(name):
        return name
    path = folder_paths.get_full_path(kind, name)
    if path is None:
        raise SystemExit(f'{kind} file "{name}" not found in models/{kind} (or give a path)')
    return path


def _stopped_at_once(samples: str, training: bool) -> str:
    """What a Ctrl-C that stopped the command at once kept: the encoded samples (``samples``, the
    ``<name>.safetensors.samples`` file written when the encoding ends) and, once training had begun, the last
    periodic state."""
    if training:
        return ("stopped at once, in the middle of a step: the training state saved last (every two minutes) is kept "
                "beside the renderer file; run the same command again to continue from there")
    if os.path.isfile(samples):
        return (f"stopped before training began: the encoded images are kept in {samples}; run the same command "
                "again to train without encoding them again")
    return "stopped before training began, while the images were encoded: nothing is kept; run the same command to start again"


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.comfyui:
        raise SystemExit("give --comfyui or set COMFYUI_PATH")
    width, height = args.size
    folder_paths = import_host(Path(args.comfyui).expanduser().resolve(), args.cpu)
    nodes = import_pack()
    nodes.host.register_model_folder()
    if args.save_dir:  # the first models/moviedreamer folder is where new files go (host.model_save_path)
        folder_paths.folder_names_and_paths["moviedreamer"][0].insert(0, os.path.abspath(os.path.expanduser(args.save_dir)))
    checkpoint = _model_path(folder_paths, "checkpoints", args.checkpoint)
    clip_vision_path = _model_path(folder_paths, "clip_vision", args.clip_vision)
    images, captions = load_keyframes(args.images, (width, height), args.caption)

    import comfy.clip_vision
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
        checkpoint, output_vae=True, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings"))
    clip_vision = comfy.clip_vision.load(clip_vision_path)
    train_node = importlib.import_module(f"{PACK_MODULE}.nodes.renderer_train_node")
    train = train_node.train_renderer
    samples = train_node.samples_path(nodes.host.model_save_path(train_node.renderer_file_name(args.save_name), make=False))

    with CtrlC() as ctrl_c:
        def on_step(step, steps, loss):
            if not ctrl_c.training and step > 1:  # the first step of this run (said at once, not only in the summary
                # at the end: the progress lines began at step 780, an audit); toycinema_train.py says it the same way
                print(f"continued from step {step - 1}: the state an interrupted run kept beside the renderer file",
                      file=sys.stderr, flush=True)
            if step == 1 or step == steps or step % max(steps // 20, 1) == 0:
                print(f"step {step}/{steps}  loss {loss:.4f}", file=sys.stderr, flush=True)
            ctrl_c.after_step(step, steps)

        try:
            _, _, text = train(model, vae, clip, clip_vision, images, captions, face_embedder=args.face_embedder,
                               token_source=args.token_source, steps=args.steps, batch_size=args.batch_size,
                               learning_rate=args.learning_rate, augmentations=args.augmentations,
                               identity_noise=args.identity_noise, context_tokens=args.context_tokens,
                               identity_tokens=args.identity_tokens, seed=args.seed, save_name=args.save_name,
                               characters=load_characters(args.images), character_threshold=args.character_threshold,
                               on_step=on_step)
        except StoppedByUser as e:
            print(f"stopped after step {e.step} of {args.steps}; the training state is kept beside the renderer file: "
                  "run the same command again to continue from there", file=sys.stderr)
            return 130
        except KeyboardInterrupt:  # before the first step (the images' encoding) or a second Ctrl-C: a traceback
            print(_stopped_at_once(samples, ctrl_c.training), file=sys.stderr)  # said nothing (an audit)
            return 130
        except ValueError as e:  # the inputs: a save_name that would replace another file, captions for other images
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(text)
    print(nodes.host.model_save_path(text.split(":", 1)[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
