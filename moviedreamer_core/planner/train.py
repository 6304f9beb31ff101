"""Training the planner: the step, the on-disk dataset format, and a small command line.

Dataset format (a folder)::

    index.json                  {"format": 1, "movies": ["movies/0001.safetensors", ...],
                                 "text_space": {...}, "identity_space": {...}, "token_space": {...}}
    movies/<name>.safetensors   one movie, tensors:
        tokens               [N, K, D]   true visual tokens of its keyframes
        keyframe_text        [N, S, Dt]  sentence embeddings (action, scene, style) per keyframe
        style                [Dt]
        descriptions         [C, Dt]     character descriptions
        identity_bank        [R, Di]     every character's identity embeddings, concatenated
        identity_offsets     [C+1]       character c owns rows offsets[c]:offsets[c+1]
        keyframe_characters  [N, M]      on-screen character indices, padded with -1
        (optional) keyframe_camera [N]   the shot's camera per keyframe (``inputs.CAMERAS`` index, -1 not stated)
        (optional) keyframe_mentions [N, M, Dt] + mention_present [N, M] (uint8)   what each keyframe's action says
                                     of each on-screen character (``script/mentions.py``)
        (optional) reference_tokens [Q, K, D] + reference_offsets [C+1]   few-shot references
      metadata "moviedreamer_movie": JSON with the three spaces and the character names

Training sees random windows of each movie (header + a run of at most ``max_keyframes`` keyframes), the same
shape of context that the sliding window gives at generation.

Command line::

    python -m moviedreamer_core.planner.train --data DIR --out planner.safetensors --config tiny --steps 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from typing import Optional

import torch
from safetensors import safe_open

from ..argument_types import number, seed, whole_number
from ..files import atomic_write_text, output_file_problem, save_safetensors
from ..spaces import SPACE_KEYS, check_declared_spaces
from ..text_files import read_json_object
from .checkpoint import save_planner
from .config import PlannerConfig, preset
from .inputs import CAMERAS, Story
from .movie_checks import MovieFileError, check_movie, read_movie_file
from .model import KeyframePlanner
from .scene_bank import KEPT_BANKS, SCENE, TooManyScenes, empty_actions, keep_banks, training_banks

DATASET_FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------ dataset I/O


def save_movie(path: str, story: Story, spaces: dict, character_names: Optional[list] = None) -> None:
    """Write one movie in the dataset format (``spaces``: text_space, identity_space, token_space dicts)."""
    if story.tokens is None:
        raise ValueError("a training movie needs its keyframes' tokens")
    offsets = [0]
    for bank in story.identity_banks:
        offsets.append(offsets[-1] + bank.shape[0])
    width = max([len(c) for c in story.keyframe_characters] + [1])
    chars = torch.full((story.n_keyframes, width), -1, dtype=torch.long)
    for i, cast in enumerate(story.keyframe_characters):
        chars[i, :len(cast)] = torch.tensor(cast, dtype=torch.long)
    di = spaces["identity_space"]["dim"]
    tensors = {
        "tokens": story.tokens.float(), "keyframe_text": story.keyframe_text.float(), "style": story.style.float(),
        "descriptions": story.descriptions.float(),
        "identity_bank": torch.cat(story.identity_banks).float() if story.identity_banks else torch.zeros(0, di),
        "identity_offsets": torch.tensor(offsets, dtype=torch.long), "keyframe_characters": chars,
    }
    if story.keyframe_camera is not None:
        tensors["keyframe_camera"] = story.keyframe_camera.long()
    if story.keyframe_mentions is not None:
        tensors["keyframe_mentions"] = story.keyframe_mentions.float()
        tensors["mention_present"] = story.mention_present.to(torch.uint8)
    if story.reference_tokens is not None:
        refs = [r if r is not None else torch.zeros(0, *story.tokens.shape[1:]) for r in story.reference_tokens]
        roff = [0]
        for r in refs:
            roff.append(roff[-1] + r.shape[0])
        tensors["reference_tokens"] = torch.cat(refs).float() if refs else torch.zeros(0, *story.tokens.shape[1:])  # a film where nobody was found
        tensors["reference_offsets"] = torch.tensor(roff, dtype=torch.long)
    meta = {**spaces, "character_names": character_names or [f"char_{c:02d}" for c in range(story.n_characters)]}
    save_safetensors({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"moviedreamer_movie": json.dumps(meta)})


def load_movie(path: str, spaces: Optional[dict] = None) -> tuple[Story, dict]:
    """One dataset movie and its metadata, checked (``movie_checks``: ``MovieFileError`` names the file and the tensor
    at fault), its sizes against ``spaces`` (the dataset's ``index.json`` spaces) when given."""
    meta, t = read_movie_file(path, lambda f: {k: f.get_tensor(k) for k in f.keys()})
    check_movie(path, t, spaces)
    off = t["identity_offsets"].tolist()
    banks = [t["identity_bank"][off[c]:off[c + 1]] for c in range(len(off) - 1)]
    casts = [tuple(int(x) for x in row if x >= 0) for row in t["keyframe_characters"]]
    refs = None
    if "reference_tokens" in t:
        ro = t["reference_offsets"].tolist()
        refs = [t["reference_tokens"][ro[c]:ro[c + 1]] for c in range(len(ro) - 1)]
    story = Story(style=t["style"], descriptions=t["descriptions"], identity_banks=banks, keyframe_text=t["keyframe_text"],
                  keyframe_characters=casts, tokens=t["tokens"], reference_tokens=refs,
                  keyframe_camera=t.get("keyframe_camera"), keyframe_mentions=t.get("keyframe_mentions"),
                  mention_present=t["mention_present"].bool() if "mention_present" in t else None)
    return story, meta


def movie_inputs(path: str) -> set[str]:
    """The optional planner inputs (``config.KNOWN_INPUTS``) a movie file gives a value of anywhere: ``camera``
    where some keyframe's camera is stated, ``mentions`` where some action names a character on screen. Reads the
    header and those two small tensors only."""
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        return _inputs_given(f.get_tensor("keyframe_camera") if "keyframe_camera" in keys else None,
                             f.get_tensor("mention_present") if "mention_present" in keys else None)


def story_inputs(story: Story) -> set[str]:
    """``movie_inputs`` of a story in memory."""
    return _inputs_given(story.keyframe_camera, story.mention_present)


def _inputs_given(camera: Optional[torch.Tensor], mention_present: Optional[torch.Tensor]) -> set[str]:
    """The inputs given, and ``"camera=<value>"`` for each camera value stated."""
    found = set()
    if camera is not None and bool((camera >= 0).any()):
        found.add("camera")
        found |= {f"camera={CAMERAS[int(i)]}" for i in torch.unique(camera) if 0 <= int(i) < len(CAMERAS)}
    if mention_present is not None and bool(mention_present.any()):
        found.add("mentions")
    return found


def learnable_inputs(requested: list, carriers) -> tuple[list, list, list]:
    """``(kept, dropped, cameras)``: the inputs of ``requested`` that some training film carries, the others, and
    the camera values the films state (``inputs.CAMERAS`` order; empty when they state every value or the camera is
    not kept). ``carriers`` yields each film's ``movie_inputs`` / ``story_inputs`` (stopped early once every input
    and every camera value is found).

    Why: a planner that declares an input no training film gave it has that input's projection at its random
    initialisation, and at generation every script that states it would add those untrained weights to the plan
    (a dataset built from captions that never name the characters has no mentions, a real film no scripted camera).
    So it is trained without them, and its file says so. Likewise a camera value no film states (the toy cinema's
    films have wide, medium and close-up shots only): its embedding row never trains, so the planner file lists the
    values it knows (``PlannerConfig.cameras``) and a script's other values are planned as the nearest of them."""
    everything = set(requested) | ({f"camera={c}" for c in CAMERAS} if "camera" in requested else set())
    found: set = set()
    for carried in carriers:
        found |= carried
        if found >= everything:
            break
    kept = [i for i in requested if i in found]
    cameras = [c for c in CAMERAS if f"camera={c}" in found]
    if "camera" not in kept or len(cameras) == len(CAMERAS):
        cameras = []
    return kept, [i for i in requested if i not in found], cameras


def cameras_message(cameras: list) -> str:
    """What both trainers say when the films state only some camera values (``learnable_inputs``)."""
    return (f"planner.cameras: the training films state only the camera values {', '.join(cameras)}; the planner "
            "plans a script's other values as the nearest of these (their embedding rows would never train)")


def dropped_inputs_message(dropped: list, kept: list) -> str:
    return (f"planner.inputs: no training film gives {' or '.join(dropped)}; the planner is trained without "
            f"{'it' if len(dropped) == 1 else 'them'} and its file declares inputs {kept} (it would otherwise add "
            f"untrained weights to every plan whose script states {'it' if len(dropped) == 1 else 'them'})")


def shared_style(styles) -> Optional[torch.Tensor]:
    """The style embedding ``[Dt]`` that every training film has (``styles`` yields each film's, read lazily and
    stopped at the first that differs), or ``None`` when two differ or there is none.

    Why: a planner trained on films of one style learns nothing from the style but that value, and any other one
    (a user's script with its own style, or none) is an input it never saw: the toy cinema's planner, trained on
    one style sentence, drew a one-character shot with two or three figures for a script without it. Such a
    planner keeps the style (``PlannerConfig.fixed_style``) and plans every script in it. The same sentence encoded
    in different batches may differ in the last bits (padding), so equal means within 1e-4."""
    first = None
    for style in styles:
        style = style.detach().float().cpu()
        if first is None:
            first = style
        elif first.shape != style.shape or not torch.allclose(first, style, atol=1e-4, rtol=0):
            return None
    return first


def movie_style(path: str) -> torch.Tensor:
    """A movie file's style embedding ``[Dt]``, without reading the rest."""
    with safe_open(path, framework="pt") as f:
        return f.get_tensor("style").clone()


#: What both trainers say when the training films share one style (``shared_style``).
FIXED_STYLE_MESSAGE = ("planner.fixed_style: every training film has the same style; the planner keeps it and plans "
                       "every script in it (a style it never saw would be an input it never learnt to read)")


def write_index(folder: str, movies: list[str], spaces: dict) -> None:
    index = {"format": DATASET_FORMAT_VERSION, "movies": movies, **spaces}
    atomic_write_text(os.path.join(folder, "index.json"), json.dumps(index, indent=1))


#: The largest ``index.json`` read (a list of film names and three spaces: a million films fit).
MAX_INDEX_BYTES = 64 * 2**20
#: The keys every dataset's ``index.json`` has.
INDEX_KEYS = ("movies",) + SPACE_KEYS


def read_index(folder: str) -> dict:
    """A dataset folder's ``index.json``, checked to have ``INDEX_KEYS`` (``movies`` a list of names). Raises a
    ``ValueError`` that names the folder or file and what is wrong: no dataset there, not JSON, a key missing."""
    path = os.path.join(folder, "index.json")
    if not folder or not os.path.isfile(path):
        raise ValueError(f"no dataset at {folder!r} (expected index.json and movies/, as "
                         "python -m moviedreamer_core.data build writes)")
    index = read_json_object(path, MAX_INDEX_BYTES)
    missing = [k for k in INDEX_KEYS if k not in index]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    if not isinstance(index["movies"], list) or not all(isinstance(m, str) for m in index["movies"]):
        raise ValueError(f"{path}: movies must be a list of file names")
    if not index["movies"]:
        raise ValueError(f"{path}: movies is empty; a dataset needs at least one movie")
    for m in index["movies"]:  # relative to the folder, or absolute (the user's own files: a command-line trainer)
        if not m.strip() or "\0" in m:
            raise ValueError(f"{path}: movies: {m[:200]!r} is not a file name")
    try:
        check_declared_spaces(index)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return index


def load_dataset(folder: str) -> tuple[list[Story], dict]:
    index = read_index(folder)
    spaces = {k: index[k] for k in SPACE_KEYS}
    stories = [load_movie(os.path.join(folder, m), spaces)[0] for m in index["movies"]]
    return stories, spaces


# -------------------------------------------------------------------------------------------- training


def random_window(story: Story, max_keyframes: int, rng: random.Random) -> Story:
    """A random run of at most ``max_keyframes`` keyframes (the header is always kept)."""
    n = story.n_keyframes
    if n <= max_keyframes:
        return story
    start = rng.randrange(0, n - max_keyframes + 1)
    return story.window(start, start + max_keyframes)


def train_step(model: KeyframePlanner, stories: list[Story], optimizer: torch.optim.Optimizer,
               generator: Optional[torch.Generator] = None, grad_clip: float = 1.0) -> dict:
    """One optimisation step on a batch of stories (regularisers active); returns the loss terms as floats."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    losses = model.loss(stories, generator=generator)
    losses["loss"].backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def train(model: KeyframePlanner, stories: list[Story], *, steps: int, batch_size: int = 16, lr: float = 3e-3,
          max_keyframes: int = 32, seed: int = 0, log_every: int = 0, warmup: int = 20) -> list[dict]:
    """A plain training loop (AdamW, linear warm-up then cosine decay). Returns the per-step losses."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.set_token_stats(torch.cat([s.tokens.reshape(-1, s.tokens.shape[-1]) for s in stories]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(min(s, steps) / steps * 3.14159)).item()))
    history = []
    t0 = time.time()
    for step in range(steps):
        batch = [random_window(rng.choice(stories), max_keyframes, rng) for _ in range(batch_size)]
        history.append(train_step(model, batch, opt, generator=gen))
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            h = history[-1]
            print(f"step {step + 1}/{steps} loss {h['loss']:.4f} nll {h['nll']:.4f} l2 {h['l2']:.4f} ({time.time() - t0:.0f} s)")
    return history


@torch.no_grad()
def teacher_forced_means(model: KeyframePlanner, story: Story, *, history: bool = True, script: bool = True) -> torch.Tensor:
    """``[N, K, D]``: the planner's expected tokens for every keyframe given the *true* earlier tokens, with
    the visual history hidden (``history=False``) or the script replaced by the nulls (``script=False``)."""
    model.eval()
    ctx = model.make_conditioning(story, train=False, cond=script)
    if not history:
        ctx.mask_history = 1.0
    seq, pred, _ = model.build_sequence(story, ctx)
    h = model.run_backbone(seq[None], position_ids=torch.arange(seq.shape[0], device=seq.device)[None])[0]
    return model.denormalise(model.predict(h[pred]).mean()).reshape(story.tokens.shape).cpu()


def evaluate(model: KeyframePlanner, stories: list[Story], *, history: bool = True, script: bool = True) -> float:
    """Teacher-forced mean squared error of the expected tokens, in token units (the learning tests' measure;
    ``history``/``script`` switch off one input to give the baselines)."""
    total, count = 0.0, 0
    for story in stories:
        mean = teacher_forced_means(model, story, history=history, script=script)
        total += float(((mean - story.tokens.float()) ** 2).sum())
        count += story.tokens.numel()
    return total / count


# ---------------------------------------------------------------------------------------- command line


#: The largest ``--config`` JSON file read (a config is a few dozen fields).
MAX_CONFIG_BYTES = 2**20


def config_file_fields(name: str) -> Optional[dict]:
    """The ``PlannerConfig`` fields of the ``--config`` JSON file ``name``, or ``None`` when there is no such file
    (``name`` is then a preset's); ``ValueError`` names the file and what is wrong with it."""
    if not os.path.isfile(name):
        if name.lower().endswith(".json") or "/" in name or os.sep in name:
            raise ValueError(f"--config {name}: no such file (--config is a preset name, tiny, small or paper, or a "
                             "JSON file)")
        return None
    return read_json_object(name, MAX_CONFIG_BYTES, f"--config {name}", "PlannerConfig fields")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moviedreamer_core.planner.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (index.json + movies/)")
    parser.add_argument("--out", required=True, help="planner file to write (.safetensors)")
    parser.add_argument("--config", default="tiny", help="preset name (tiny, small, paper) or a JSON file of PlannerConfig fields")
    parser.add_argument("--steps", type=whole_number(1), default=1000)
    parser.add_argument("--batch-size", type=whole_number(1), default=16)
    parser.add_argument("--lr", type=number(0.0, 1.0, above=True), default=3e-3)
    parser.add_argument("--max-keyframes", type=whole_number(1), default=32, help="longest training window, in keyframes")
    parser.add_argument("--seed", type=seed, default=0)
    args = parser.parse_args(argv)

    problem = output_file_problem(args.out)
    if problem:
        print(f"error: --out {problem}", file=sys.stderr)
        return 2
    try:
        fields = config_file_fields(args.config)
        try:
            stories, spaces = load_dataset(args.data)
        except ValueError as e:
            raise ValueError(f"--data: {e}") from None
        try:
            cfg = (PlannerConfig.from_dict({**fields, **spaces}) if fields is not None
                   else preset(args.config, **spaces))
        except (ValueError, TypeError) as e:
            raise ValueError(f"--config {args.config}: {e}") from None
    except (MovieFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kept, dropped, cameras = learnable_inputs(cfg.inputs, (story_inputs(st) for st in stories))
    if dropped:
        print(dropped_inputs_message(dropped, kept))
        cfg = dataclasses.replace(cfg, inputs=kept)
    if cameras:
        print(cameras_message(cameras))
        cfg = dataclasses.replace(cfg, cameras=cameras)
    style = shared_style(st.style for st in stories)
    if style is not None:
        print(FIXED_STYLE_MESSAGE)
        cfg = dataclasses.replace(cfg, fixed_style=True)
    try:
        banks, messages = training_banks(
            (st.keyframe_text[:, SCENE] for st in stories) if cfg.snap_scenes else None,
            (empty_actions(st.keyframe_text, st.keyframe_characters) for st in stories) if cfg.snap_empty else None)
    except TooManyScenes as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in messages:
        print(line)
    cfg = dataclasses.replace(cfg, **{name: len(banks[name]) if name in banks else 0 for name in KEPT_BANKS})
    model = KeyframePlanner(cfg)
    if style is not None:
        model.fixed_style.copy_(style)
    keep_banks(model, banks)
    print(f"{len(stories)} movies, {sum(s.n_keyframes for s in stories)} keyframes; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    try:
        train(model, stories, steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_keyframes=args.max_keyframes,
              seed=args.seed, log_every=max(1, args.steps // 20))
    except KeyboardInterrupt:  # a traceback said nothing of what was kept (an audit)
        print(f"stopped: nothing saved ({args.out} is written when all {args.steps} steps are done; this quick trainer "
              "keeps no checkpoint: python -m moviedreamer_core.train planner saves them and resumes)", file=sys.stderr)
        return 130
    save_planner(model, args.out, extra={"steps": args.steps, "movies": len(stories)})
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
