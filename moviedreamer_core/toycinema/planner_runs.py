"""The toy planner: trained with the project's own trainer, planned with the node's own function, scored on tokens.

* ``train_toy_planner(dataset, out_dir, variant=...)`` runs ``moviedreamer_core.train`` in-process (one CPU
  process, ``load_config("tiny", overrides)`` + ``run``, as ``python -m moviedreamer_core.train planner --config
  tiny data.path=...`` does) with the overrides of one benchmark variant (``VARIANTS``), and writes
  ``toy_run.json`` beside the planner file so that ``plan_films`` plans the way the variant was trained.
* ``plan_films(planner, films, ...)`` plans every film with ``planner.generate_storyboard``, the function the
  ARKeyframePlanner node runs, from ``planner_data.film_embeds`` (ScriptEncode's output for the film); the
  zero-shot prior takes the characters' reference tokens from the token encoder on their portraits.
* ``TokenReadout`` + ``token_readout_scores``: a renderer-free score. A small classifier is fitted on the TRUE
  tokens of training films (tokens -> location, camera, who is on screen) and applied to planned tokens of
  held-out films; the scores are ``scores.py``'s, plus location accuracy on "same-place" keyframes (those whose
  location is the previous keyframe's: continuity). Given the true tokens of the same films, the same readout
  of those gives the ceiling.
* ``StateReadout`` + ``token_state_scores``: the same for the per-film state the scripts leave unsaid (each place's
  light, each character's hat; ``scores.unscripted_scores``), and ``plan_films(..., true_history=True)`` plans each
  keyframe from the true tokens of the keyframes before it: read side by side with the free-running plan, what the
  planner loses by reading its own keyframes (exposure bias) is told from what it cannot read at all.

Variants (the benchmark's ablations, all on the ``tiny`` preset):

==================  ==================================================================================
full                tiny.yaml's settings (dropout 0.1, condition dropout 0.15, history masking 0.5,
                    identity randomisation, slot permutation), windows of up to 32 keyframes
no_identity         the same, trained on a dataset written with ``identities=False`` (pass that folder)
no_history          each keyframe planned alone: training windows of one keyframe
                    (``data.max_keyframes=1``) and planning each keyframe as a script of its own (no
                    earlier keyframe in context; ``plan_tokens``'s ``window`` cannot do this: ``window=1``
                    keeps one or two earlier keyframes, ``window=0``/``None`` keeps all of them)
no_regularisation   no dropout (inputs, head, attention), no condition dropout (no CFG at plan time), no
                    history masking, no identity randomisation; slot permutation stays (it is what makes
                    slots carry no names, not a regulariser). Meant with ``subset=`` (few films)
==================  ==================================================================================

Step budget. Measured on the 2-core machine (see ``FULL_STEPS``); thread count: ``THREADS``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..files import atomic_write_text
from ..identity.base import FaceEmbedder
from ..planner import KeyframePlanner, ZeroShotPrior, generate_storyboard, load_planner, plan_given_history, story_from_embeds
from ..script_encoding import TextEncoder, TokenEncoder
from ..storyboard import derive_seed
from ..text_files import read_json_object
from .film import Film, FrameLabel
from .planner_data import MANIFEST, MAX_TOY_JSON_BYTES, cached_text_encoder, film_embeds, keyframe_tokens, read_manifest
from .scores import location_accuracy, score_labels, unscripted_scores
from .world import N_CAMERAS, N_CHARACTERS, N_HATS, N_LOCATIONS, N_PLACE_LOOKS, N_POSITIONS

#: Optimiser steps of the toy planner (global batch 16): about four minutes on two CPU cores, five on one.
FULL_STEPS = 1200
#: torch threads of a training process by default: one (two are only 1.2x faster for a 64-wide model, and one
#: leaves a core to a second process: the benchmark trains its ablations two at a time). The retraining command
#: passes its own thread count.
THREADS = 1
RUN_FILE = "toy_run.json"

#: Where the toy planner departs from tiny.yaml: hidden 96 x 3 layers (tiny: 64 x 2). Issue #21: read from its
#: tokens on the 32 development films it keeps a place's light 0.84 / 0.85 (two seeds) against 0.65 for tiny,
#: hats 0.61 / 0.59 against 0.59 / 0.54; about 1.6x tiny's training time (see the README's toy cinema section).
#: ``snap_scenes``: scenes planned close to the nearest of the training films' 84 scene sentences
#: (``planner/scene_bank.py``): place read from the planned tokens 0.944 -> 0.986 (development films), 0.955 -> 0.992
#: (test films); rendered, test films: 0.89 -> 0.95 by the probe. ``snap_empty``: a keyframe with nobody on screen
#: planned with the action of the training films' empty keyframes nearest its action and scene (they all say "nobody"
#: in a few words; a user's "Morning comes." was drawn with a figure: ``planner/scene_bank.py``).
TOY_SETTINGS: list[str] = ["planner.hidden_size=96", "planner.num_layers=3", "planner.intermediate_size=192",
                           "planner.snap_scenes=true", "planner.snap_empty=true"]
#: Share of the toy planner's training films whose scripts never say where a character stands
#: (``grammar.generate_films(unsaid_places=...)``; the pictures are the same). Planned from scripts in words of their
#: own, which never say it either, the planner trained only on films that always did drew a one-character shot with
#: two figures, or a three-character shot with two: 16 of 63 keyframes of three hand-written scripts planned three
#: ways, against none with 0.3 of the films unsaid (the renderer's place head on the planned tokens; the README's toy
#: cinema section has the figures).
UNSAID_PLACES = 0.3
#: Share of the toy planner's training films' action sentences written in a user's own words
#: (``grammar.in_other_words``: "<names> <verb>.", either verb form, saying nothing of the event). Hand-written
#: scripts (the renderer's place head on the planned tokens): one-character close-ups after a two- or three-character
#: shot 6 of 160 wrong -> 0, one-shot scripts 24 of 54 -> 9; development films 0 of 827 either way. 0.3 fixed the same
#: slips but read the held-out "A smile from Fen." close-up as a two-character one (9 development keyframes).
OTHER_WORDS = 0.15
#: Share of the toy planner's training films' scenes (and empty shots) that open on a medium shot or a close-up rather
#: than a wide one (``grammar.generate_film(cut_in=...)``). Users' scripts often cut straight into a new place closer;
#: a planner that only ever saw places change on wide shots drew such a shot at the previous place.
CUT_IN = 0.1
#: The same for the scenes that open with nobody there (few: about one in eight), so that the planner sees enough empty
#: closer shots to draw them empty.
EMPTY_CUT_IN = 0.6

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_identity": [],
    # windows of one keyframe; 128 of them per step (a full step sees 16 films of ~20 keyframes, ~310 keyframes;
    # 128 one-keyframe windows take about as long per step, each with the whole script header)
    "no_history": ["data.max_keyframes=1", "train.batch_size=128"],
    "no_regularisation": ["planner.dropout=0", "planner.attention_dropout=0", "planner.condition_dropout=0",
                          "planner.history_mask_ratio=0", "planner.identity_randomisation=false"],
}


def _subset_folder(dataset_folder: str, out_dir: str, n: int, manifest: dict) -> str:
    """A dataset folder whose ``index.json`` lists the first ``n`` training films (and the held-out ones) of
    ``dataset_folder`` by absolute path (``os.path.join`` keeps an absolute name), without copying them."""
    from ..planner.train import write_index

    train = manifest["train"]
    if not 0 < n <= len(train):
        raise ValueError(f"subset={n}: the dataset has {len(train)} training films")
    folder = os.path.join(out_dir, "subset_data")
    os.makedirs(folder, exist_ok=True)
    root = os.path.abspath(dataset_folder)
    movies = [os.path.join(root, m) for m in train[:n] + manifest["val"]]
    write_index(folder, movies, manifest["spaces"])
    return folder


def toy_overrides(dataset_folder: str, out_dir: str, *, variant: str = "full", steps: Optional[int] = None,
                  seed: int = 0, subset: Optional[int] = None, threads: Optional[int] = None,
                  extra: Sequence[str] = ()) -> list[str]:
    """The ``section.key=value`` overrides of the tiny config for one toy run (``train_toy_planner`` uses them;
    the same list works on the command line). ``extra`` overrides come last (they win)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (choices: {', '.join(VARIANTS)})")
    manifest = read_manifest(dataset_folder)
    if variant == "no_identity" and manifest["options"]["identities"]:
        raise ValueError(f"variant no_identity needs a dataset written with identities=False; {dataset_folder} has identities")
    if variant != "no_identity" and not manifest["options"]["identities"]:
        raise ValueError(f"{dataset_folder} was written with identities=False: train it as variant no_identity")
    data = _subset_folder(dataset_folder, out_dir, subset, manifest) if subset else dataset_folder
    val = manifest["val"] if not subset else [os.path.join(os.path.abspath(dataset_folder), m) for m in manifest["val"]]
    steps = int(steps or FULL_STEPS)
    return [
        f"data.path={data}", f"data.val_movies={json.dumps(val)}", "data.val_fraction=0",
        f"output.dir={out_dir}", "output.planner=null", f"output.log_every={max(1, steps // 20)}",
        f"train.steps={steps}", f"train.seed={seed}", f"train.threads={threads or THREADS}",
        "checkpoint.every=0", "checkpoint.resume=none",  # retrained from scratch every time
        f"eval.every={max(1, steps // 4) if val else 0}", "eval.baselines=true",
        *TOY_SETTINGS, *VARIANTS[variant], *extra,
    ]


def train_toy_planner(dataset_folder: str, out_dir: str, *, variant: str = "full", steps: Optional[int] = None, seed: int = 0,
                      subset: Optional[int] = None, log: Optional[Callable[[str], None]] = None,
                      threads: Optional[int] = None, overrides: Sequence[str] = (), checkpoint_every: int = 0) -> str:
    """Train one toy planner from scratch with ``moviedreamer_core.train`` (in-process, one CPU process) and
    return the path of its ``planner.safetensors``. ``subset=n``: only the first ``n`` training films.
    ``toy_run.json`` beside it records the variant, the dataset options, the time and the last held-out errors.
    ``overrides``: more ``section.key=value`` settings, applied last. ``checkpoint_every=n``: the trainer's resumable
    checkpoint every ``n`` steps in ``out_dir``, and a run stopped by a kill, a Ctrl-C or a crash continues from the
    newest one (the trainer's exact resume: the same weights as an uninterrupted run); 0, from scratch every time."""
    from ..train import load_config, run

    manifest = read_manifest(dataset_folder)
    resumable = [f"checkpoint.every={int(checkpoint_every)}", "checkpoint.resume=auto"] if checkpoint_every > 0 else []
    overrides = toy_overrides(dataset_folder, out_dir, variant=variant, steps=steps, seed=seed, subset=subset, threads=threads,
                              extra=[*resumable, *overrides])
    cfg = load_config("tiny", overrides)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    result = run(cfg, log=log)
    seconds = time.perf_counter() - t0
    history = result["history"]
    last_eval = next((r for r in reversed(history) if "val_mse" in r), {})
    record = {"variant": variant, "dataset": os.path.abspath(dataset_folder), "options": manifest["options"],
              "subset": subset, "steps": cfg.train.steps, "seed": seed, "threads": cfg.train.threads,
              "seconds": round(seconds, 2), "steps_per_second": round(len(history) / seconds, 3),  # this invocation's
              "parameters": result.get("parameters"), "final_loss": history[-1]["loss"] if history else None,
              "heldout": {k: v for k, v in last_eval.items() if k.startswith("val")}, "overrides": overrides}
    atomic_write_text(os.path.join(out_dir, RUN_FILE), json.dumps(record, indent=1))
    return result["planner"]


def read_run(planner_path: str) -> dict:
    """``toy_run.json`` beside a planner file ({} when there is none), read bounded; a ``ValueError`` naming the file
    when it is not a JSON object."""
    path = os.path.join(os.path.dirname(os.path.abspath(planner_path)), RUN_FILE)
    if not os.path.isfile(path):
        return {}
    return read_json_object(path, MAX_TOY_JSON_BYTES)


# ------------------------------------------------------------------------------------------ planning


def plan_films(planner: Union[str, KeyframePlanner, ZeroShotPrior], films: Sequence[Film], text_encoder: TextEncoder,
               face_embedder: FaceEmbedder, token_encoder: Optional[TokenEncoder] = None, *, seed: int = 0,
               temperature: float = 0.0, guidance: float = 1.0, window: Optional[int] = 16, variant: Optional[str] = None,
               references: Optional[bool] = None, names: Optional[str] = None,
               swaps: Optional[Sequence[Optional[tuple[int, int]]]] = None, true_history: bool = False) -> list[torch.Tensor]:
    """Planned tokens ``[N_i, K, D]`` of every film through ``generate_storyboard``.

    ``planner``: a planner file (loaded with ``load_planner``, as the loader node does), a ``KeyframePlanner`` or
    a ``ZeroShotPrior`` (which needs ``token_encoder``: the characters' reference tokens are their portraits
    encoded by it). ``variant`` and ``references`` default to what ``toy_run.json`` beside the planner file says
    (else ``"full"`` and no references): ``no_identity`` plans from scripts without reference images,
    ``no_history`` plans each keyframe as a script of its own (keyframe i with seed ``derive_seed(seed, i)``).

    Default ``temperature=0``: each token is the mean of the most likely mixture component, deterministic. The
    benchmark scores fidelity to the script and to continuity, not diversity; guidance 1 (no CFG), window 16 (the
    node's default: the context keeps 16 to 32 keyframes, most of a 16-shot toy film). ``swaps``: per film, two
    cast members whose reference portraits are exchanged (``film_embeds``' ``swap``) or ``None``.
    ``true_history``: each keyframe planned from the film's true tokens of the keyframes before it
    (``planner.plan_given_history``: an evaluation of a learned planner with full history; needs ``token_encoder``).
    """
    run_info = read_run(planner) if isinstance(planner, str) else {}
    if isinstance(planner, str):
        planner = load_planner(planner)
    variant = variant or run_info.get("variant", "full")
    options = run_info.get("options", {})
    if references is None:
        references = bool(options.get("references", False))
    if names is None:
        names = options.get("names", "world")
    if true_history and (isinstance(planner, ZeroShotPrior) or variant == "no_history" or token_encoder is None):
        raise ValueError("true_history plans a learned planner with history from the films' true tokens: give a "
                         "planner trained with history and a token_encoder")
    text_encoder = cached_text_encoder(text_encoder)
    out = []
    swaps = list(swaps) if swaps is not None else [None] * len(films)
    for film, swap in zip(films, swaps):
        if isinstance(planner, ZeroShotPrior):
            if token_encoder is None:
                raise ValueError("the zero-shot prior plans from reference tokens: give plan_films a token_encoder")
            embeds = film_embeds(film, text_encoder, face_embedder, token_encoder, names=names, swap=swap)
            out.append(generate_storyboard(planner, embeds, seed=seed, temperature=temperature).tokens)
            continue
        if references and token_encoder is None:
            raise ValueError("this planner was trained with reference tokens: give plan_films a token_encoder")
        embeds = film_embeds(film, text_encoder, face_embedder, token_encoder if references else None,
                             identities=variant != "no_identity", names=names, swap=swap)
        if true_history:
            story = story_from_embeds(embeds, tokens=keyframe_tokens(film, token_encoder))
            out.append(plan_given_history(planner, story))
        elif variant == "no_history":
            tokens = [generate_storyboard(planner, embeds.keyframe_window(i, i + 1), seed=derive_seed(seed, i), temperature=temperature,
                                          guidance=guidance, window=window).tokens[0] for i in range(embeds.n_keyframes)]
            out.append(torch.stack(tokens))
        else:
            out.append(generate_storyboard(planner, embeds, seed=seed, temperature=temperature, guidance=guidance,
                                           window=window).tokens)
    return out


def true_tokens(films: Sequence[Film], token_encoder: TokenEncoder, keyframe_size: int = 32) -> list[torch.Tensor]:
    """The films' keyframes through the token encoder, ``[N_i, K, D]`` each."""
    return [keyframe_tokens(f, token_encoder, keyframe_size) for f in films]


# ------------------------------------------------------------------------------------------ readout


@dataclass
class _Readout:
    """A one-hidden-layer network on a keyframe's standardised, flattened tokens, fitted full-batch on true tokens of
    training films: what ``TokenReadout`` and ``StateReadout`` share (they differ in what they read)."""

    net: torch.nn.Module
    mean: torch.Tensor
    std: torch.Tensor

    @staticmethod
    def _start(tokens: Sequence[torch.Tensor], rows: int, what: str, hidden: int, outputs: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Module]:
        """The standardised inputs ``[N, K*D]``, their mean and std, and a fresh network seeded with ``seed``;
        refuses tokens whose keyframe count is not ``rows`` (the number of ``what``)."""
        x = torch.cat([t.reshape(t.shape[0], -1).float() for t in tokens])
        if rows != x.shape[0]:
            raise ValueError(f"{x.shape[0]} keyframes of tokens for {rows} {what}")
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, outputs))
        return (x - mean) / std, mean, std, net

    @staticmethod
    def _train(net: torch.nn.Module, x: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor], *, steps: int,
               lr: float, weight_decay: float) -> torch.nn.Module:
        """Full-batch Adam on ``loss_of(net(x))``; returns the net in eval mode."""
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            loss = loss_of(net(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.eval()

    def _outputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, K, D]`` -> the network's outputs ``[N, outputs]``."""
        return self.net((tokens.reshape(tokens.shape[0], -1).float() - self.mean) / self.std)


@dataclass
class TokenReadout(_Readout):
    """Tokens ``[K, D]`` of one keyframe -> its ``FrameLabel`` (location, camera, characters on screen and their
    screen positions), fitted on true tokens of training films (``fit``)."""

    @classmethod
    def fit(cls, tokens: Sequence[torch.Tensor], labels: Sequence[Sequence[FrameLabel]], *, hidden: int = 128,
            steps: int = 1500, lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> "TokenReadout":
        """Full-batch Adam on cross-entropy (location, camera; position of each character on screen) plus binary
        cross-entropy (presence of each character). About 8 s for 5 000 keyframes on one thread."""
        flat = [lab for film in labels for lab in film]
        x, mean, std, net = cls._start(tokens, len(flat), "labels", hidden, _OUTPUTS, seed)
        loc = torch.tensor([lab.location for lab in flat])
        cam = torch.tensor([lab.camera for lab in flat])
        pres = torch.from_numpy(np.stack([lab.presence(N_CHARACTERS) for lab in flat]))
        pos = torch.full((len(flat), N_CHARACTERS), -100, dtype=torch.long)  # -100: not on screen, ignored
        for i, lab in enumerate(flat):
            for c, p in lab.on_screen:
                pos[i, c] = p
        ce, bce = torch.nn.functional.cross_entropy, torch.nn.functional.binary_cross_entropy_with_logits

        def loss_of(out: torch.Tensor) -> torch.Tensor:
            o = _split(out)
            loss = ce(o["location"], loc) + ce(o["camera"], cam) + bce(o["presence"], pres)
            if bool((pos >= 0).any()):
                loss = loss + ce(o["position"].reshape(-1, N_POSITIONS), pos.reshape(-1), ignore_index=-100)
            return loss

        return cls(cls._train(net, x, loss_of, steps=steps, lr=lr, weight_decay=weight_decay), mean, std)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor) -> list[FrameLabel]:
        """``[N, K, D]`` -> N labels."""
        o = _split(self._outputs(tokens))
        loc, cam, pres, pos = o["location"].argmax(-1), o["camera"].argmax(-1), o["presence"] > 0, o["position"].argmax(-1)
        return [FrameLabel(int(loc[i]), int(cam[i]), tuple((int(c), int(pos[i, c])) for c in torch.nonzero(pres[i]).flatten()))
                for i in range(tokens.shape[0])]


_OUTPUTS = N_LOCATIONS + N_CAMERAS + N_CHARACTERS + N_CHARACTERS * N_POSITIONS


def _split(out: torch.Tensor) -> dict:
    a = N_LOCATIONS
    b = a + N_CAMERAS
    c = b + N_CHARACTERS
    return {"location": out[:, :a], "camera": out[:, a:b], "presence": out[:, b:c],
            "position": out[:, c:].reshape(out.shape[0], N_CHARACTERS, N_POSITIONS)}


@dataclass
class StateReadout(_Readout):
    """Tokens ``[K, D]`` of one keyframe -> the per-film state its picture shows (issue #21): the place's light
    (look) and the hat at each screen place, in ``probe.Probe.read_state``'s format, so ``scores.unscripted_scores``
    scores tokens as it scores pictures. Fitted on true tokens of training films (``fit``); it reads planned tokens
    without the decoder in between, so a planner's loss of state is told apart from the decoder's."""

    @classmethod
    def fit(cls, tokens: Sequence[torch.Tensor], films: Sequence[Film], *, hidden: int = 256, steps: int = 1500,
            lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0) -> "StateReadout":
        """Full-batch Adam on cross-entropy of the look and of the hat at each place where a figure stands (every
        camera size: wide keyframes' tokens carry the hats too). About 10 s for 5 000 keyframes on one thread."""
        plans = [plan for film in films for plan in film.keyframes]
        x, mean, std, net = cls._start(tokens, len(plans), "keyframes of films", hidden,
                                       N_PLACE_LOOKS + N_POSITIONS * N_HATS, seed)
        look = torch.tensor([plan.look for plan in plans])
        hat = torch.full((len(plans), N_POSITIONS), -100, dtype=torch.long)  # -100: nobody there, ignored
        for i, plan in enumerate(plans):
            for (_, p, _), h in zip(plan.figures, plan.hats):
                hat[i, p] = h
        ce = torch.nn.functional.cross_entropy

        def loss_of(o: torch.Tensor) -> torch.Tensor:
            loss = ce(o[:, :N_PLACE_LOOKS], look)
            if bool((hat >= 0).any()):
                loss = loss + ce(o[:, N_PLACE_LOOKS:].reshape(-1, N_HATS), hat.reshape(-1), ignore_index=-100)
            return loss

        return cls(cls._train(net, x, loss_of, steps=steps, lr=lr, weight_decay=weight_decay), mean, std)

    @torch.no_grad()
    def read_state(self, tokens: torch.Tensor) -> list[dict]:
        """``[N, K, D]`` -> N ``{"look": look id, "hats": [hat id at left, centre, right]}``."""
        o = self._outputs(tokens)
        looks = o[:, :N_PLACE_LOOKS].argmax(-1).tolist()
        hats = o[:, N_PLACE_LOOKS:].reshape(-1, N_POSITIONS, N_HATS).argmax(-1).tolist()
        return [{"look": looks[i], "hats": hats[i]} for i in range(len(looks))]


def token_state_scores(readout: StateReadout, tokens: Sequence[torch.Tensor], films: Sequence[Film]) -> dict:
    """``scores.unscripted_scores`` of tokens (one ``[N_i, K, D]`` per film) read by ``readout``."""
    if len(tokens) != len(films):
        raise ValueError(f"{len(tokens)} films of tokens for {len(films)} films")
    return unscripted_scores([s for t in tokens for s in readout.read_state(t)], films)


def same_place(labels: Sequence[FrameLabel]) -> list[bool]:
    """Per keyframe: whether its location is the previous keyframe's (never for the first)."""
    return [i > 0 and labels[i].location == labels[i - 1].location for i in range(len(labels))]


def _scores(pred: list[FrameLabel], true: list[FrameLabel], keep: list[bool]) -> dict:
    same_p = [p for p, k in zip(pred, keep) if k]
    same_t = [t for t, k in zip(true, keep) if k]
    return {**score_labels(pred, true), "location_same_place": location_accuracy(same_p, same_t) if same_t else float("nan")}


def token_readout_scores(readout: TokenReadout, pred_tokens: Sequence[torch.Tensor], labels: Sequence[Sequence[FrameLabel]],
                         true_tokens: Optional[Sequence[torch.Tensor]] = None) -> dict:
    """Scores of planned tokens (one ``[N_i, K, D]`` per film) read by ``readout`` against the films' labels:
    location and camera accuracy, character F1, exact character-set match, and ``location_same_place``
    (location accuracy on keyframes that stay where the previous one was). With ``true_tokens`` (the same
    films' true tokens) the same scores of those are added with the prefix ``true_`` (the readout's ceiling)."""
    if len(pred_tokens) != len(labels):
        raise ValueError(f"{len(pred_tokens)} films of tokens for {len(labels)} films of labels")
    true = [lab for film in labels for lab in film]
    keep = [k for film in labels for k in same_place(film)]
    pred = [lab for t in pred_tokens for lab in readout.predict(t)]
    out = {**_scores(pred, true, keep), "keyframes": len(true), "same_place_keyframes": sum(keep)}
    if true_tokens is not None:
        ceiling = [lab for t in true_tokens for lab in readout.predict(t)]
        out.update({f"true_{k}": v for k, v in _scores(ceiling, true, keep).items()})
    return out


__all__ = ["FULL_STEPS", "THREADS", "VARIANTS", "MANIFEST", "toy_overrides", "train_toy_planner", "read_run", "plan_films",
           "StateReadout", "token_state_scores",
           "true_tokens", "TokenReadout", "same_place", "token_readout_scores"]
