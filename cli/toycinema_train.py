"""Retrain every toy cinema model from scratch: ``python cli/toycinema_train.py`` (33 minutes on 2 CPU cores).

The toy cinema (``moviedreamer_core/toycinema``) ships trained files in ``moviedreamer_core/toycinema/weights``
so nobody has to run this; it is here so that anybody can, and so the files are the output of the pack's own
trainers, not of an unpublished script. Stages, in order (each can be run alone with ``--stages``):

1. ``probe``: the label probe that scores every stage (location, camera, who is on screen, each place's light and
   each figure's hat); 240 films, 1200 steps.
2. ``identity``: the toy world's identity embedder (its "face recogniser"), which ScriptEncode's ``toycinema``
   face embedder uses on the characters' reference portraits. Both nets train on one thread, so with two
   threads the probe trains in a second process beside it.
3. ``decoder``: the diffusion autoencoder (paper section 3.2) with identity-preserving rendering (section 3.4):
   the tokenizer (keyframe -> 2 tokens), the pixel-space UNet in the host's classes (v-prediction) and the
   renderer adapter, trained together through the host's UNet and noise schedule (``toycinema/autoencoder.py``);
   6600 steps, about 33 minutes. The renderer's identity slots are the screen places read from the tokens by a
   small place head, with "nobody here" fillers at the empty places and the pixel's place on its identity and token
   queries (``RendererConfig``: ``identity_places``, ``identity_empty_slots``, ``identity_positions``,
   ``token_positions``); the figures' and hats' pixels weigh more in the loss.
4. ``decoder_tune``: the decoder's tuning phase (``tune_decoder``): the UNet and the renderer trained on for
   ``TUNE_STEPS`` with the tokenizer frozen, the city square's background weighted (``TUNE_PLACE_WEIGHTS``), on films
   that also show empty places in closer shots (``tuning_films``, ``TUNE_EMPTY_AFTER_LEAVE``); it
   tunes the decoder in ``--out`` (the one stage 3 wrote) or else the shipped one. The tokens do not change, so a
   planner trained on them stays valid.
5. ``planner``: the planner dataset (MiniLM sentence embeddings, identities from the reference portraits,
   tokens from the new tokenizer, the cast named per film; ``planner_runs.UNSAID_PLACES`` of the films' scripts never
   say where a character stands, as users' scripts do not, and ``planner_runs.OTHER_WORDS`` of the action sentences
   are in a user's own words) and the toy planner (the ``tiny`` preset widened to
   hidden 96 x 3 layers, ``planner_runs.TOY_SETTINGS``) trained on it with the accelerate trainer (about 4 minutes).

The decoder and its tuning phase keep their training state in ``--out`` while they run (``DECODER_STATE``,
``TUNE_STATE``): after a Ctrl-C (the first stops after the step under way, exit 130), a kill or a crash, the same
command continues them from there and writes what an uninterrupted run writes. The planner stage keeps its dataset and
the trainer's checkpoints in ``--out/toycinema_planner.work`` (``planner_work_folder``) and continues from the newest.

Measured as one run of the whole command on this release's machine (two cores): 33.1 minutes (probe and identity
embedder side by side 1.4, decoder 22.2 at 0.20 s a step, its tuning phase 5.6 at 0.17 s a step, planner dataset
0.5, planner 3.4). The shipped decoder comes from an earlier release's run (37.9 minutes, decoder 33.0 at 0.30 s a
step) tuned by a ``--stages decoder_tune`` run of an earlier release (6.1 minutes), the shipped planner from a
``--stages planner`` run of this release (5.1 minutes on one thread of an idle machine; the previous release's took
15.4 on one thread beside other jobs). Machines of the same kind have differed by up to 2x in
speed between sessions (0.52, 0.26, 0.29, 0.21, 0.30, 0.23 and, this release, 0.20 s per decoder step).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time

try:  # a submodule of the pack (tests), or a script run from anywhere
    from .ctrl_c import CtrlC, StoppedByUser
    from .host_library import PACK_MODULE, comfyui_folder, core_module, import_host, import_pack
except ImportError:  # a script: its folder is on sys.path, except in isolated mode (python -I)
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # appended: it shadows nothing
    from ctrl_c import CtrlC, StoppedByUser
    from host_library import PACK_MODULE, comfyui_folder, core_module, import_host, import_pack

_types = core_module("argument_types")
seed, whole_number, number, output_folder = _types.seed, _types.whole_number, _types.number, _types.output_folder
MAX_THREADS = core_module("threads").MAX_THREADS

STAGES = ("probe", "identity", "decoder", "decoder_tune", "planner")
#: Training films and held-out films come from different seeds of the story grammar. The held-out films of
#: ``HELD_OUT_SEED`` are the benchmark's development set (they chose the recipes); films of ``TEST_SEED`` are its test
#: set, used only to report (``benchmarks/toycinema.py --films-seed test``): nothing is chosen on them.
TRAIN_SEED, HELD_OUT_SEED, TEST_SEED = 1000, 9000, 40000
#: Training films' scripts never use a sentence's held-out phrasing (``grammar.generate_film(phrasings=...)``); the
#: development and test films draw among all phrasings, so part of what they are scored on was never read in training.
TRAIN_PHRASINGS = "train"
#: The shipped decoder's training steps (batch 16; 26 to 33 minutes on two cores, 0.23 to 0.30 s a step). See
#: ``toycinema/autoencoder.py`` for what 2200, 3300 and 4400 steps measured; the world with lights and hats needs
#: more (at 4400 steps it drew the right hat in 0.97 of medium shots but the exact cast only in 0.82 from true tokens).
DECODER_STEPS = 6600
#: The decoder's tuning phase (stage ``decoder_tune``, ``tune_decoder``): steps more of the UNet and the renderer
#: with the tokenizer frozen (the tokens, and so the planner's dataset, stay what they are), at a lower learning rate,
#: with each place's background weighted (``AutoencoderTraining.place_weights``). The city square at night is the
#: place the decoder loses: its grey bricks lie near the green places in token space and were drawn green-teal
#: (see ``toycinema/autoencoder.py``).
TUNE_STEPS = 2000
TUNE_LR = 3e-4
TUNE_PLACE_WEIGHTS = {"city_night": 8.0}
#: The tuning phase's films also show what users' scripts ask for and the decoder's first training never drew: places
#: left empty in a medium shot or a close-up (at scene openings, ``planner_runs.EMPTY_CUT_IN``, and right after the last
#: character walks away, ``grammar.generate_film(empty_after_leave=...)``), and scenes opening closer
#: (``planner_runs.CUT_IN``). From its true tokens the decoder tuned on the plain films drew an empty medium shot or
#: close-up wide: framed at the tokens' camera 4 of 18 and 3 of 18 (every place under every light; read by the nearest
#: ground-truth empty background over places, lights and cameras), although the tokens carry the framing.
TUNE_EMPTY_AFTER_LEAVE = 1.0
#: ... and, as a share of the films' keyframes, keyframes of empty places framed medium or close-up
#: (``autoencoder.empty_closer_keyframes``): the films alone have too few (1.6% of their keyframes). Framed at the true
#: tokens' camera (medium / close-up, of 18 each), 2000 tuning steps from the shipped decoder: films alone 7 / 5; with
#: 0.1 of such keyframes 15 / 8, 0.25 15 / 9, 0.5 15 / 8 (a close-up drawn too wide is mostly drawn medium), every
#: place right from 0.1 on; on the development films every other figure as before or better (README, toy cinema).
TUNE_EMPTY_CLOSER = 0.25
#: Where the decoder's training and its tuning phase keep their state while they run, in ``--out`` (written every two
#: minutes and on Ctrl-C, ``moviedreamer_core/training_state.py``): the same command run again continues from it; each
#: is removed once its stage's files are saved.
DECODER_STATE, TUNE_STATE = "toycinema_decoder.resume", "toycinema_decoder_tune.resume"
#: The planner stage's folder in ``--out`` while it runs (``planner_work_folder``), and how many resumable checkpoints
#: its training writes (every 100 of the 1200 steps: a kill loses at most about 20 seconds).
PLANNER_WORK, PLANNER_CHECKPOINTS = "toycinema_planner.work", 12
#: The largest ``stage.json`` of the planner's work folder read: it holds a few hundred bytes (films, steps, seed, the
#: spaces, the recipe), so 1 MiB is thousands of times that; a larger one is another stage's (the folder is emptied).
MAX_STAGE_BYTES = 2**20
#: The planner stage's record format (``stage["format"]``): 2 since planners keep the one style of their training
#: films (``fixed_style``); a folder an earlier release left holds checkpoints without it, so it starts afresh.
PLANNER_STAGE_FORMAT = 2
#: The probe's training films and steps (``toycinema/probe.py``'s ``train_probe`` says why these).
PROBE_FILMS, PROBE_STEPS = 240, 1200
#: Fourier frequencies of the pixel's place in the renderer's identity queries (``RendererConfig.identity_positions``).
IDENTITY_POSITIONS = 3
#: The same for its token queries (``RendererConfig.token_positions``): without it a wide shot's lone character was
#: drawn at two or three places (see ``renderer/adapter.py``).
TOKEN_POSITIONS = 3


def stage_list(text: str) -> list[str]:
    """``--stages``: a comma-separated, non-empty subset of ``STAGES``, as a list (an empty list used to finish at
    once, doing nothing, as if it had retrained)."""
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"{'unknown stage(s) ' + str(unknown) if unknown else 'no stage given'}; "
                                         f"choose from {', '.join(STAGES)}")
    return stages


stage_list.__name__ = "stages"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="toycinema_train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=None, help="the ComfyUI folder (default: $COMFYUI_PATH or the one around this pack)")
    p.add_argument("--out", type=output_folder, default=None,
                   help="the folder the files go to, made when missing (default: the pack's shipped weights folder)")
    p.add_argument("--stages", type=stage_list, default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--films", type=whole_number(1), default=300, help="training films for the decoder and the planner")
    p.add_argument("--decoder-steps", type=whole_number(1), default=DECODER_STEPS)
    p.add_argument("--tune-steps", type=whole_number(1), default=TUNE_STEPS, help="steps of the decoder's tuning phase (decoder_tune)")
    p.add_argument("--planner-steps", type=whole_number(1), default=None, help="default: the toy planner's own budget")
    p.add_argument("--probe-steps", type=whole_number(1), default=PROBE_STEPS)
    p.add_argument("--identity-steps", type=whole_number(1), default=None, help="default: the identity embedder's own budget")
    p.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=None, help="torch CPU threads (default: up to 2)")
    p.add_argument("--no-identity", action="store_true", help="decoder without identity conditioning (an ablation)")
    p.add_argument("--prediction", default="v", choices=("v", "eps"),
                   help="what the decoder UNet predicts (v: the shipped choice; eps: the earlier one, for comparison)")
    p.add_argument("--figure-weight", type=number(0.0, 1000.0), default=None,
                   help="extra loss weight of the figures' pixels in the decoder's training (default: the shipped recipe's)")
    p.add_argument("--slots-only", action="store_true",
                   help="renderer with identity slots by rank only: no 'nobody here' fillers, no place terms on its "
                   "identity or token queries, no place head (an earlier release's recipe, for comparison)")
    p.add_argument("--no-token-positions", action="store_true",
                   help="renderer without the place term on its token queries (the previous release's recipe, for comparison)")
    p.add_argument("--rank-slots", action="store_true",
                   help="identity slots by rank in the character list, not screen places read from the tokens (the "
                   "previous release's recipe, for comparison)")
    p.add_argument("--seed", type=seed, default=0)
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _pack(name: str):
    return importlib.import_module(f"{PACK_MODULE}.{name}")


def train_decoder(films, identities, out_dir: str, *, steps: int, seed: int = 0, prediction: str = "v", log=_log,
                  training_overrides: dict | None = None, empty_slots: bool = True,
                  positions: bool = True, token_positions: bool = True, places: bool = True) -> dict:
    """Train tokenizer + toy UNet + renderer adapter on ``films`` and write the three files into ``out_dir``
    (renderer and UNet under ``moviedreamer/`` and beside it, as shipped). ``identities`` ``[n_characters, Di]``
    or ``None`` (no identity path); ``prediction``: what the UNet predicts (``toycinema_models.PREDICTIONS``);
    ``empty_slots``: the renderer's "nobody in this place" fillers (``RendererConfig.identity_empty_slots``);
    ``positions``: its place term on the identity queries (``RendererConfig.identity_positions``);
    ``token_positions``: the same on the token queries (``RendererConfig.token_positions``); ``places``: identity slots
    are screen places read from the tokens (``RendererConfig.identity_places``).
    Returns the paths and the loss curve."""
    import torch

    core = _pack("moviedreamer_core")
    toy = _pack("nodes.toycinema_models")
    host = _pack("nodes.host")
    renderer_mod = _pack("moviedreamer_core.renderer")
    ae = _pack("moviedreamer_core.toycinema.autoencoder")
    tok = _pack("moviedreamer_core.toycinema.tokenizer")
    from_attention = _pack("nodes.attention_patch")
    make_denoiser = _pack("nodes.renderer_training").make_denoiser
    world = _pack("moviedreamer_core.toycinema.world")
    del core

    torch.manual_seed(seed)
    data = ae.keyframe_set(films, 32)
    log(f"decoder: {len(data)} keyframes from {len(films)} films")
    model = toy.build_toy_unet(seed=seed, prediction=prediction)
    tokenizer = tok.ToyTokenizer()
    layers = from_attention.discover_cross_attention(model)
    identity_space = None
    if identities is not None:
        identity_space = {"encoder": "pending", "dim": int(identities.shape[1])}
    cfg = renderer_mod.RendererConfig(token_space=tokenizer.space.to_dict(), context_dim=layers[0].context_dim,
                                      layer_dims=[l.inner_dim for l in layers], context_tokens=4,
                                      identity_space=identity_space, identity_tokens=2,
                                      identity_slots=max(world.MAX_ON_SCREEN) if identity_space else 0,
                                      identity_empty_slots=bool(identity_space) and empty_slots,
                                      identity_positions=IDENTITY_POSITIONS if identity_space and positions else 0,
                                      token_positions=TOKEN_POSITIONS if token_positions else 0,
                                      identity_places=bool(identity_space) and empty_slots and places,
                                      source="moviedreamer-toycinema")
    adapter = renderer_mod.RendererAdapter(cfg)
    patcher = host.managed(adapter)
    denoise = make_denoiser(model, patcher, train_base=True)
    training = ae.AutoencoderTraining(steps=steps, seed=seed, **(training_overrides or {}))
    losses, seconds = _train(tokenizer, adapter, model, denoise, data, identities, training, "decoder", 20, log,
                             resume=os.path.join(out_dir, DECODER_STATE))
    os.makedirs(os.path.join(out_dir, "moviedreamer"), exist_ok=True)
    adapter.cfg.token_space = tokenizer.space.to_dict()
    paths = {"tokenizer": os.path.join(out_dir, toy.TOKENIZER_FILE), "unet": os.path.join(out_dir, toy.UNET_FILE),
             "renderer": os.path.join(out_dir, "moviedreamer", toy.RENDERER_FILE)}
    tokenizer.save(paths["tokenizer"])
    toy.save_toy_unet(model, paths["unet"])
    return {"paths": paths, "losses": losses, "seconds": seconds, "adapter": adapter,
            "identity_space_pending": identity_space is not None}


def tune_decoder(films, identities, source: str, out_dir: str, *, steps: int, seed: int = 0, log=_log) -> dict:
    """The decoder's tuning phase: the tokenizer, UNet and renderer in ``source`` (a folder laid out as the shipped
    one; ``identities`` as ``train_decoder``'s, unused when the renderer has no identity path), the UNet and the
    renderer trained ``steps`` more with the tokenizer frozen, at ``TUNE_LR``, averaged from the first step, each
    place's background weighted by ``TUNE_PLACE_WEIGHTS``, on the keyframes of ``films`` (``tuning_films``) and
    ``TUNE_EMPTY_CLOSER`` as many again of empty places framed closer; writes the UNet and the renderer into ``out_dir``
    (the tokenizer is unchanged: a planner trained on its tokens stays valid). Returns the paths and the loss curve."""
    toy = _pack("nodes.toycinema_models")
    host = _pack("nodes.host")
    renderer_mod = _pack("moviedreamer_core.renderer")
    ae = _pack("moviedreamer_core.toycinema.autoencoder")
    world = _pack("moviedreamer_core.toycinema.world")
    renderer_file = os.path.join("moviedreamer", toy.RENDERER_FILE)
    tokenizer = _pack("moviedreamer_core.toycinema.tokenizer").ToyTokenizer.load(toy.weights_path(toy.TOKENIZER_FILE, source))
    model = toy.load_toy_unet(toy.weights_path(toy.UNET_FILE, source))
    adapter = renderer_mod.load_renderer(toy.weights_path(renderer_file, source))
    denoise = _pack("nodes.renderer_training").make_denoiser(model, host.managed(adapter), train_base=True)
    if adapter.identity_proj is None:  # a decoder trained without identities (--no-identity) is tuned without them
        identities = None
    unknown = set(TUNE_PLACE_WEIGHTS) - {loc.name for loc in world.LOCATIONS}
    if unknown:
        raise ValueError(f"TUNE_PLACE_WEIGHTS names no location of the world: {sorted(unknown)}")
    weights = tuple(float(TUNE_PLACE_WEIGHTS.get(loc.name, 1.0)) for loc in world.LOCATIONS)
    training = ae.AutoencoderTraining(steps=steps, seed=seed + 1, lr=TUNE_LR, warmup_steps=min(50, steps),
                                      ema_warm_start=False, place_weights=weights, train_tokenizer=False)
    data = ae.keyframe_set(films, 32)
    data = ae.joined(data, ae.empty_closer_keyframes(round(TUNE_EMPTY_CLOSER * len(data)), seed))
    log(f"decoder tuning: {len(data)} keyframes ({round(TUNE_EMPTY_CLOSER * 100)}% of an empty place framed closer), "
        f"{steps} steps, tokenizer frozen, from {source}")
    losses, seconds = _train(tokenizer, adapter, model, denoise, data, identities, training, "decoder tuning", 10, log,
                             resume=os.path.join(out_dir, TUNE_STATE))
    paths = {"unet": os.path.join(out_dir, toy.UNET_FILE), "renderer": os.path.join(out_dir, renderer_file)}
    os.makedirs(os.path.dirname(paths["renderer"]), exist_ok=True)
    toy.save_toy_unet(model, paths["unet"])
    renderer_mod.save_renderer(adapter, paths["renderer"])
    _pack("moviedreamer_core.training_state").remove_state(os.path.join(out_dir, TUNE_STATE))
    return {"paths": paths, "losses": losses, "seconds": seconds}


def _train(tokenizer, adapter, model, denoise, data, identities, training, label: str, reports: int, log, *,
           resume: str | None = None) -> tuple[list, float]:
    """``autoencoder.train_autoencoder`` on the toy UNet, logging the loss ``reports`` times: the decoder's training
    and its tuning phase. ``resume``: the training's state file (continued when it holds this training's state; a
    Ctrl-C stops after the step under way with the state saved, ``StoppedByUser``). Returns the losses and the
    seconds taken."""
    import torch

    toy = _pack("nodes.toycinema_models")
    ae = _pack("moviedreamer_core.toycinema.autoencoder")
    started = time.perf_counter()

    with CtrlC() as ctrl_c:
        def progress(step, total, loss):
            if not ctrl_c.training and step > 1:
                log(f"{label}: continued from step {step - 1} ({os.path.basename(resume)})")
            if step == 1 or step % max(total // reports, 1) == 0 or step == total:
                log(f"{label} step {step}/{total} loss {loss:.4f} ({time.perf_counter() - started:.0f} s)")
            ctrl_c.after_step(step)  # not total: after a stage's last step the next stage would start

        with torch.inference_mode(False):
            losses = ae.train_autoencoder(tokenizer, adapter, model.model, denoise, data, identities, toy.text_context(),
                                          training, progress=progress, resume=resume)
    return losses, time.perf_counter() - started


def planner_work_folder(out: str, stage: dict) -> str:
    """``--out/toycinema_planner.work``: the planner stage's dataset and the trainer's checkpoints, kept until the
    stage has saved its planner, so a stopped stage continues (the dataset written once, the training from its newest
    checkpoint). ``stage`` (films, steps, seed, the spaces of the tokens, identities and text, the recipe) is written beside
    them; a folder written for another ``stage`` is emptied first."""
    work = os.path.join(out, PLANNER_WORK)
    record = os.path.join(work, "stage.json")
    try:  # bounded: a stage.json that is huge or a device (/dev/zero linked in) was read whole, without end
        same = core_module("text_files").read_json_file(record, MAX_STAGE_BYTES) == json.loads(json.dumps(stage))
    except ValueError:  # missing, cut short by a kill, nested too deeply, too large: another stage's
        same = False
    if not same:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        with open(record, "w", encoding="utf-8") as f:
            json.dump(stage, f, indent=1)
    return work


def training_films(n: int, *, unsaid_places: float = 0.0, other_words: float = 0.0, cut_in: float = 0.0,
                   empty_cut_in: float = 0.0, empty_after_leave: float = 0.0):
    """The ``n`` training films (``TRAIN_SEED``, training phrasings only): the decoder's, the planner's and the
    benchmark's ablations'. ``unsaid_places``: the share whose scripts never say where a character stands (the
    planner's, ``planner_runs.UNSAID_PLACES``; the same pictures, so the decoder's films need not say).
    ``other_words``: the share of action sentences in a user's own words (``planner_runs.OTHER_WORDS``). ``cut_in``:
    the share of scenes that open closer than wide (``planner_runs.CUT_IN``; other pictures, so the planner's own);
    ``empty_cut_in``: of those that open with nobody there (``planner_runs.EMPTY_CUT_IN``); ``empty_after_leave``: the
    share of the moments the last character walks away after which the place is shown empty (the decoder's tuning
    films, ``TUNE_EMPTY_AFTER_LEAVE``)."""
    return _pack("moviedreamer_core.toycinema.grammar").generate_films(TRAIN_SEED, n, phrasings=TRAIN_PHRASINGS,
                                                                       unsaid_places=unsaid_places,
                                                                       other_words=other_words, cut_in=cut_in,
                                                                       empty_cut_in=empty_cut_in,
                                                                       empty_after_leave=empty_after_leave)


def tuning_films(n: int):
    """The decoder tuning phase's ``n`` films: ``training_films`` with the planner's closer openings
    (``planner_runs.CUT_IN``, ``planner_runs.EMPTY_CUT_IN``) and the place shown empty after its last character walks
    away (``TUNE_EMPTY_AFTER_LEAVE``): the same pictures the planner plans, and empty closer shots."""
    runs = _pack("moviedreamer_core.toycinema.planner_runs")
    return training_films(n, cut_in=runs.CUT_IN, empty_cut_in=runs.EMPTY_CUT_IN, empty_after_leave=TUNE_EMPTY_AFTER_LEAVE)


def planner_training_films(n: int):
    """The planner's ``n`` training films: ``training_films`` with ``planner_runs.UNSAID_PLACES`` of them unsaid,
    ``planner_runs.OTHER_WORDS`` of their action sentences in a user's own words and ``planner_runs.CUT_IN`` of their
    scenes opening closer than wide (``planner_runs.EMPTY_CUT_IN`` of those with nobody there)."""
    runs = _pack("moviedreamer_core.toycinema.planner_runs")
    return training_films(n, unsaid_places=runs.UNSAID_PLACES, other_words=runs.OTHER_WORDS, cut_in=runs.CUT_IN,
                          empty_cut_in=runs.EMPTY_CUT_IN)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except StoppedByUser as e:
        _log(f"stopped after step {e.step}; the stage's training state is kept in the output folder: run the same "
             "command again to continue from there")
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the decoder's steps (the planner stops at once)
        _log("stopped by Ctrl-C; run the same command again: the decoder stages continue from their last save, the "
             f"planner stage from its last checkpoint ({PLANNER_WORK}), the probe and identity stages start over")
        return 130


def _run(args) -> int:
    """The stages ``args.stages`` asks for (``stage_list``, parsed with the arguments), in ``STAGES``' order."""
    stages = args.stages
    import_host(comfyui_folder(args.comfyui))
    import_pack()
    import torch

    threads = args.threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    toy = _pack("nodes.toycinema_models")
    out = os.path.abspath(args.out or toy.WEIGHTS_DIR)
    os.makedirs(os.path.join(out, "moviedreamer"), exist_ok=True)
    # a run killed (kill -9, a crash) while it saved a stage's state (.resume, tens of MB) or a file left the write's
    # temporary file beside it for ever (an audit); only names files.atomic_path makes and nobody is writing
    files = _pack("moviedreamer_core.files")
    removed = files.remove_stale_temp_files(out, os.path.join(out, "moviedreamer"))
    if removed:
        _log(files.removed_temp_files_text(removed, f"a killed run left in {out}"))
    grammar = _pack("moviedreamer_core.toycinema.grammar")
    identity_mod = _pack("moviedreamer_core.toycinema.identity")
    started = time.perf_counter()

    probe_process = None
    if "probe" in stages and "identity" in stages and threads >= 2:
        # both nets train on one thread (more do not help them): the probe in a second process, side by side
        argv = ["--stages", "probe", "--out", out, "--probe-steps", str(args.probe_steps), "--seed", str(args.seed)]
        probe_process = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv,
                                          *(["--comfyui", args.comfyui] if args.comfyui else [])])
    elif "probe" in stages:
        probe = _pack("moviedreamer_core.toycinema.probe").train_probe(seed=args.seed, n_films=PROBE_FILMS, steps=args.probe_steps)
        probe.save(os.path.join(out, toy.PROBE_FILE))
        _log(f"probe: {probe.info['seconds']} s")
    if "identity" in stages:
        t = time.perf_counter()
        kwargs = {"steps": args.identity_steps} if args.identity_steps else {}
        embedder = identity_mod.train_identity_embedder(seed=args.seed, **kwargs)
        embedder.save(os.path.join(out, toy.IDENTITY_FILE))
        _log(f"identity embedder: {time.perf_counter() - t:.0f} s")
    if probe_process is not None and probe_process.wait():
        raise SystemExit(f"the probe's training process failed (exit code {probe_process.returncode}); its error is printed above")
    def trained(name):  # a file trained into --out (by this run or an earlier one), else the shipped one
        return toy.weights_path(name, out if os.path.isfile(os.path.join(out, name)) else toy.WEIGHTS_DIR)

    def embedder():
        return identity_mod.ToyIdentityEmbedder.load(trained(toy.IDENTITY_FILE))

    films = training_films(args.films)
    held_out = grammar.generate_films(HELD_OUT_SEED, 4)  # the planner trainer's periodic evaluation
    if "decoder" in stages:
        ae = _pack("moviedreamer_core.toycinema.autoencoder")
        identities = None if args.no_identity else ae.reference_identities(embedder())
        overrides = {} if args.figure_weight is None else {"figure_weight": args.figure_weight}
        result = train_decoder(films, identities, out, steps=args.decoder_steps, seed=args.seed, prediction=args.prediction,
                               training_overrides=overrides, empty_slots=not args.slots_only, positions=not args.slots_only,
                               token_positions=not (args.no_token_positions or args.slots_only),
                               places=not (args.rank_slots or args.slots_only))
        adapter = result["adapter"]
        if identities is not None:
            adapter.cfg.identity_space = embedder().space.to_dict()
        _pack("moviedreamer_core.renderer").save_renderer(adapter, result["paths"]["renderer"])
        _pack("moviedreamer_core.training_state").remove_state(os.path.join(out, DECODER_STATE))
        _log(f"decoder: {result['seconds']:.0f} s, final loss {sum(result['losses'][-50:]) / 50:.4f}")
    if "decoder_tune" in stages:
        ae = _pack("moviedreamer_core.toycinema.autoencoder")
        source = out if os.path.isfile(os.path.join(out, toy.UNET_FILE)) else toy.WEIGHTS_DIR
        identities = ae.reference_identities(embedder())
        result = tune_decoder(tuning_films(args.films), identities, source, out, steps=args.tune_steps, seed=args.seed)
        _log(f"decoder tuning: {result['seconds']:.0f} s, final loss {sum(result['losses'][-50:]) / min(50, len(result['losses'])):.4f}")
    if "planner" in stages:
        tokenizer = _pack("moviedreamer_core.toycinema.tokenizer").ToyTokenizer.load(trained(toy.TOKENIZER_FILE))
        text_encoder = _pack("moviedreamer_core.sentence_encoders").transformers_text_encoder("minilm")
        planner_data = _pack("moviedreamer_core.toycinema.planner_data")
        runs = _pack("moviedreamer_core.toycinema.planner_runs")
        faces = embedder()
        stage = {"format": PLANNER_STAGE_FORMAT, "films": len(films), "held_out": HELD_OUT_SEED,
                 "steps": args.planner_steps or runs.FULL_STEPS, "seed": args.seed, "tokens": tokenizer.space.to_dict(), "identities": faces.space.to_dict(),
                 "text": text_encoder.space.to_dict(), "recipe": list(runs.TOY_SETTINGS), "unsaid_places": runs.UNSAID_PLACES,
                 "other_words": runs.OTHER_WORDS, "cut_in": runs.CUT_IN,
                 "empty_cut_in": runs.EMPTY_CUT_IN}  # a dataset of other films is not resumed
        work = planner_work_folder(out, stage)
        data = os.path.join(work, "data")
        if os.path.isfile(os.path.join(data, planner_data.MANIFEST)):
            _log(f"planner dataset: the one written before ({data})")
        else:
            t = time.perf_counter()
            shutil.rmtree(data, ignore_errors=True)  # a dataset whose writing was stopped
            planner_data.write_planner_dataset(planner_training_films(args.films), data, text_encoder, faces,
                                               tokenizer.token_encoder(), held_out=held_out)
            _log(f"planner dataset: {time.perf_counter() - t:.0f} s")
        path = runs.train_toy_planner(data, os.path.join(work, "run"), steps=stage["steps"], seed=args.seed, threads=threads,
                                      log=_log, checkpoint_every=max(1, stage["steps"] // PLANNER_CHECKPOINTS))
        shutil.copyfile(path, os.path.join(out, "moviedreamer", toy.PLANNER_FILE))
        shutil.rmtree(work)
    _log(f"done in {time.perf_counter() - started:.0f} s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
