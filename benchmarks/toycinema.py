"""The method benchmark: does MovieDreamer's recipe do what the paper says, measured in the toy cinema?

    python benchmarks/toycinema.py            # about 42 minutes on 2 CPU cores the first time (it trains the
                                              # ablations into --work), a few minutes afterwards
    python benchmarks/toycinema.py --films-seed test --skip-ablations   # the test set: 32 fresh films, what ships
    python benchmarks/toycinema.py --films-seed 123 --films 8 --skip-ablations   # fresh films of any seed

Everything is scored on held-out toy films (story seeds the models never saw) with the shipped label probe
(location, camera, who is on screen) and the toy identity embedder (identity consistency: crops of the same
character in the rendered keyframes closer to each other than to other characters'). Which films
(``--films-seed``): ``dev`` (the default), 16 films of ``HELD_OUT_SEED`` (9000), the development set, on which the
recipes were chosen; ``test``, 32 films of ``TEST_SEED`` (40000), the test set, used only to report; or any other
integer seed (32 films unless ``--films`` says). The training films' seed (``TRAIN_SEED``, 1000) is refused.

Every image row is also read place by place (``toycinema/counting.py``: who stands at left, centre and right, or
nobody, with the toy identity embedder): *exact cast* (right characters, right count, right places), the share of
wide keyframes with extra figures, of keyframes with missing figures, and of keyframes showing one character twice or
more; a second table breaks exact cast, extra and missing figures down per camera size and per number of characters
on screen. The ground-truth row is the scorer's own error. Every row is also scored on the *unscripted state*
(``scores.unscripted_scores``): on keyframes whose script does not say it, does the place show the film's light and
does each character of a medium or close-up keyframe wear the film's hat (read by the probe), against the chance of a
guess that knows nothing of the film. The *identity swap*: two characters' reference portraits exchanged in every
film's script, planned and rendered by the shipped models; in their single-character close-ups, the share whose figure
reads as the portrait's character (the look moved with the portrait). The last line printed is one JSON object: the
shipped planner's row (planned tokens, after rendering: ``exact_cast``, ``extra_figures_wide``, ``missing_figures``,
``doubled``, ``camera``, ``location``, ``unscripted_state`` (with ``unscripted_look`` / ``unscripted_hat``), ...),
``unscripted_chance``, ``identity_swap``, ``unscripted_state_no_history`` when the ablations run, the same columns from
true tokens under ``true_tokens`` and for the ground truth under ``ground_truth``. Rows:

* ground truth: the films' own keyframes (the probe's ceiling);
* decoded from true tokens (the tokenizer's two tokens of each true keyframe, drawn by the renderer): with the
  renderer's identity conditioning, with it switched off (identity_weight 0), and a renderer trained without
  identity conditioning (paper section 3.4: identities repair what two tokens lose);
* planned, then decoded: the shipped planner (script + camera + mentions + identities + history); planners trained the same way
  without identity embeddings, without history (each keyframe planned alone), and the training-free zero-shot
  prior (paper section 3.3);
* anti-overfitting: the same planner with and without its regularisers (dropout, token masking, identity
  randomisation), both trained on a small subset of the films.

Planned rows also report "location, same place": accuracy on keyframes whose location is the previous
keyframe's (continuity), and every planned row is also scored on its tokens directly (a readout fitted on
true tokens; no renderer in between). The shipped planner's unscripted state is also read from its tokens
(``state_from_tokens``): as planned for rendering and planned from the true keyframes before each, which tells what it
loses by reading its own earlier keyframes from what it cannot read at all (JSON ``tokens_unscripted_state``,
``tokens_unscripted_state_true_history``). Every ablation is trained with the pack's own trainers and the shipped
models' settings (``cli/toycinema_train.py``, ``toycinema/planner_runs.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK / "cli"))

from host_library import PACK_MODULE, comfyui_folder, core_module, import_host, import_pack  # noqa: E402
from toycinema_train import DECODER_STEPS  # noqa: E402  (no host import at module level)

COLUMNS = ("location", "location, background", "camera", "character F1", "exact set", "location, same place", "identity consistency",
           "exact cast", "extra figures, wide", "missing figures", "drawn twice", "unscripted state", "unscripted look",
           "unscripted hat")
#: The count-aware columns: keys of ``scores.count_scores``.
COUNT_COLUMNS = {"exact cast": "exact_cast", "extra figures, wide": "extra_figures_wide",
                 "missing figures": "missing_figures", "drawn twice": "doubled"}
#: The shipped planner's row, and the rows of the state read from its tokens (``state_from_tokens``).
SHIPPED_ROW = "planner (shipped: script + camera + mentions + identities + history)"
FREE_RUNNING, TRUE_HISTORY = "planned (each keyframe after its own earlier ones)", "planned from the true keyframes before each"
_types = core_module("argument_types")
whole_number, number, output_file = _types.whole_number, _types.number, _types.output_file
MAX_THREADS = core_module("threads").MAX_THREADS
#: Training films whose true tokens the token readouts are fitted on.
READOUT_FILMS = 120
#: Films scored when ``--films`` is not given: the development set as before, 32 for the test set or another seed.
DEV_FILMS, OTHER_FILMS = 16, 32
#: Most films one run scores: about 26,000 keyframes, some hours on two cores (a film takes about 20 s to score).
MAX_FILMS = 1000


def _pack(name: str):
    return importlib.import_module(f"{PACK_MODULE}.{name}")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=None)
    p.add_argument("--work", default=os.path.expanduser("~/.cache/moviedreamer/toycinema_benchmark"),
                   help="where the ablations are trained and kept (reused on the next run)")
    p.add_argument("--films-seed", default="dev",
                   help="the films to score: dev (HELD_OUT_SEED 9000, the development set the recipes were chosen on), "
                   "test (TEST_SEED 40000, the test set, only to report) or any integer seed of fresh films")
    p.add_argument("--films", type=whole_number(1, MAX_FILMS, "a few hours of scoring"), default=None,
                   help=f"films to score (default: {DEV_FILMS} of the development set, {OTHER_FILMS} otherwise)")
    p.add_argument("--threads", type=whole_number(1, MAX_THREADS), default=None,
                   help="torch CPU threads (default: $MOVIEDREAMER_THREADS, else one: see README, CPU threads)")
    p.add_argument("--train-films", type=whole_number(1), default=300, help="training films (as the shipped models)")
    p.add_argument("--subset", type=whole_number(1), default=24, help="films of the few-data anti-overfitting comparison")
    p.add_argument("--planner-steps", type=whole_number(1), default=None, help="default: the shipped planner's budget")
    p.add_argument("--decoder-steps", type=whole_number(1), default=DECODER_STEPS, help="as the shipped decoder")
    p.add_argument("--steps", type=whole_number(1), default=20, help="sampling steps per keyframe")
    p.add_argument("--cfg", type=number(0.0, 100.0), default=2.0, help="guidance scale")
    p.add_argument("--json", type=output_file, default=None, help="also write the figures here")
    p.add_argument("--skip-plain-decoder", action="store_true",
                   help="leave out the row of the decoder trained without identity conditioning (it trains a whole "
                   "second decoder, about 15 minutes, unless --work already holds it)")
    p.add_argument("--skip-ablations", action="store_true",
                   help="score only what ships (true tokens, the shipped planner, the zero-shot prior): trains nothing, "
                   "a few minutes")
    p.add_argument("--train-only", default=None, metavar="VARIANT",
                   help="only write the datasets and train this planner ablation (no_identity, no_history, full_subset, "
                   "no_regularisation_subset), then exit: to train several ablations in parallel processes")
    args = p.parse_args(argv)
    try:
        args.films_seed, args.films_set = films_seed(args.films_seed)
    except ValueError as e:
        p.error(str(e))
    if args.films is None:
        args.films = DEV_FILMS if args.films_set == "dev" else OTHER_FILMS
    return args


def films_seed(value: str) -> tuple[int, str]:
    """``--films-seed``: ``(seed, set name)``; ``dev`` and ``test`` name the two fixed sets (``cli/toycinema_train.py``)."""
    from toycinema_train import HELD_OUT_SEED, TEST_SEED, TRAIN_SEED

    named = {"dev": HELD_OUT_SEED, "test": TEST_SEED}
    if str(value).strip().lower() in named:
        value = named[str(value).strip().lower()]
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--films-seed must be dev, test or an integer, got {value!r}") from None
    if seed < 0:
        raise ValueError(f"--films-seed must be dev, test or an integer of at least 0, got {seed}")
    if seed == TRAIN_SEED:
        raise ValueError(f"--films-seed {seed} draws the training films (TRAIN_SEED): choose fresh films")
    return seed, {HELD_OUT_SEED: "dev", TEST_SEED: "test"}.get(seed, "seed")


class Bench:
    """The shipped models, the held-out films, and scoring of keyframe images."""

    def __init__(self, args):
        import torch

        self.args = args
        self.toy = _pack("nodes.toycinema_models")
        self.host = _pack("nodes.host")
        self.decode = _pack("nodes.toycinema_decode").decode_tokens
        tc = "moviedreamer_core.toycinema"
        self.grammar, self.runs = _pack(f"{tc}.grammar"), _pack(f"{tc}.planner_runs")
        self.identity_mod, self.scores = _pack(f"{tc}.identity"), _pack(f"{tc}.scores")
        self.background_match = _pack(f"{tc}.background_match")
        W = self.toy.WEIGHTS_DIR
        self.probe = _pack(f"{tc}.probe").Probe.load(os.path.join(W, self.toy.PROBE_FILE))
        self.embedder = self.identity_mod.ToyIdentityEmbedder.load(os.path.join(W, self.toy.IDENTITY_FILE))
        self.tokenizer = _pack(f"{tc}.tokenizer").ToyTokenizer.load(os.path.join(W, self.toy.TOKENIZER_FILE))
        self.model = self.toy.load_toy_unet(os.path.join(W, self.toy.UNET_FILE))
        self.vae = self.toy.pixel_vae()
        self.renderer = self.host.managed(_pack("moviedreamer_core.renderer").load_renderer(
            os.path.join(self.toy.TOY_MODEL_DIR, self.toy.RENDERER_FILE)))
        self.planner_path = os.path.join(self.toy.TOY_MODEL_DIR, self.toy.PLANNER_FILE)
        self.text = _pack("moviedreamer_core.toycinema.planner_data").cached_text_encoder(
            _pack("moviedreamer_core.sentence_encoders").transformers_text_encoder("minilm"))
        held_out_seed = _pack("cli.toycinema_train").HELD_OUT_SEED
        self.train_films = _pack("cli.toycinema_train").training_films(args.train_films)
        self.planner_films = _pack("cli.toycinema_train").planner_training_films(args.train_films)  # the ablations' data
        self.films = self.grammar.generate_films(args.films_seed, args.films)
        # the ablations' planner trainer watches development films, whichever films are scored
        self.watched_films = self.grammar.generate_films(held_out_seed, 4)
        self.counter = _pack(f"{tc}.counting").PlaceCounter(self.embedder)
        self.toy_world = _pack(f"{tc}.world")
        self.labels = [f.labels() for f in self.films]
        self.identities = torch.from_numpy(self.embedder.reference_embeddings(64)).float()
        self.cond = [[self.toy.text_context(), {}]]

    # ------------------------------------------------------------------ scoring
    def frames(self, tokens_per_film, renderer=None, identity_weight=1.0, identities=True, swaps=None):
        """Decode every film's tokens with the renderer; identities of who the script puts on screen (from their
        reference portraits; with ``swaps``, per film two characters whose portraits were exchanged)."""
        import numpy as np
        import torch

        tokens = torch.cat(list(tokens_per_film))
        rows = []
        for film, swap in zip(self.films, swaps or [None] * len(self.films)):
            trade = {swap[0]: swap[1], swap[1]: swap[0]} if swap else {}
            for plan in film.keyframes:
                chars = [trade.get(c, c) for c, _, _ in plan.figures]
                rows.append(self.identities[chars] if chars else torch.zeros(0, self.identities.shape[1]))
        images = self.decode(self.model, self.vae, renderer or self.renderer, tokens, rows if identities else None,
                             positive=self.cond, negative=self.cond, steps=self.args.steps, cfg=self.args.cfg,
                             identity_weight=identity_weight)
        out, i = [], 0
        for film in self.films:
            out.append(images[i:i + film.n_keyframes])
            i += film.n_keyframes
        return [np.asarray(x) for x in out]

    def score(self, frames_per_film) -> dict:
        import numpy as np

        pred, true, keep = [], [], []
        for frames, labels in zip(frames_per_film, self.labels):
            pred += self.probe.predict(np.asarray(frames))
            true += labels
            keep += self.runs.same_place(labels)
        s = self.scores.score_labels(pred, true)
        same = [p for p, k in zip(pred, keep) if k]
        same_true = [t for t, k in zip(true, keep) if k]
        crops, who = [], []
        for frames, film in zip(frames_per_film, self.films):
            for image, plan in zip(frames, film.keyframes):
                for c, crop in self.identity_mod.character_crops(np.asarray(image), plan):
                    crops.append(crop)
                    who.append(c)
        consistency = self.identity_mod.identity_consistency(self.embedder.embed_crops(crops), np.asarray(who))
        return {"location": s["location_accuracy"], "camera": s["camera_accuracy"], "character F1": s["character_f1"],
                "exact set": s["character_set_match"],
                "location, same place": self.scores.location_accuracy(same, same_true) if same else float("nan"),
                "identity consistency": consistency["centroid_accuracy"],
                "location, background": self.background(frames_per_film)["location_background"],
                **self.count(frames_per_film),
                **self.unscripted(frames_per_film)}

    def background(self, frames_per_film) -> dict:
        """The place (and light) of each keyframe's nearest ground-truth background (``toycinema.background_match``):
        a reading no training can bias, beside the probe's."""
        import numpy as np

        images = [np.asarray(im) for frames in frames_per_film for im in frames]
        return self.background_match.background_scores(images, [k for f in self.films for k in f.keyframes])

    def unscripted(self, frames_per_film) -> dict:
        """The per-film state the scripts leave unsaid (``scores.unscripted_scores``: looks of places, hats), read by
        the probe; every score under ``unscripted``."""
        import numpy as np

        states = self.probe.read_state(np.concatenate([np.asarray(f) for f in frames_per_film]))
        u = self.scores.unscripted_scores(states, self.films)
        return {"unscripted state": u["unscripted_state"], "unscripted look": u["unscripted_look"],
                "unscripted hat": u["unscripted_hat"], "unscripted": u}

    def lone_close_up(self, plan) -> bool:
        """A close-up of one character: where the identity swap is read."""
        return plan.camera == self.toy_world.camera_id("close_up") and len(plan.figures) == 1

    def swaps(self) -> list:
        """Per film, the two cast members whose portraits the identity-swap test exchanges: the two with the most
        single-character close-ups (``None`` for a film with fewer than two such characters)."""
        out = []
        for film in self.films:
            alone = {}
            for plan in film.keyframes:
                if self.lone_close_up(plan):
                    alone[plan.figures[0][0]] = alone.get(plan.figures[0][0], 0) + 1
            ranked = sorted(alone, key=lambda c: (-alone[c], c))
            out.append(tuple(ranked[:2]) if len(ranked) >= 2 else None)
        return out

    def swap_score(self, frames_per_film, swaps) -> dict:
        """Identity swap: in single-character close-ups of a swapped character, the share whose figure reads as the
        character whose portrait the script gave it (the look moved with the portrait), and as the script's own."""
        import numpy as np

        moved = kept = n = 0
        for frames, film, swap in zip(frames_per_film, self.films, swaps):
            if not swap:
                continue
            trade = {swap[0]: swap[1], swap[1]: swap[0]}
            rows = [i for i, plan in enumerate(film.keyframes) if self.lone_close_up(plan) and plan.figures[0][0] in trade]
            if not rows:
                continue
            readings = self.counter.read([np.asarray(frames[i]) for i in rows], [film.keyframes[i].camera for i in rows])
            for i, reading in zip(rows, readings):
                c = film.keyframes[i].figures[0][0]
                drawn = [x for x in reading.occupants if x >= 0]
                moved += drawn == [trade[c]]
                kept += drawn == [c]
                n += 1
        return {"moved_with_portrait": moved / n if n else float("nan"), "kept_script_character": kept / n if n else float("nan"),
                "close_ups": n}

    def count(self, frames_per_film) -> dict:
        """The count-aware columns, and every count score under ``count`` (``scores.count_scores``): each keyframe read
        place by place at the script's camera size."""
        import numpy as np

        images = [image for frames in frames_per_film for image in np.asarray(frames)]
        true = [label for labels in self.labels for label in labels]
        counts = self.scores.count_scores(self.counter.read(images, [t.camera for t in true]), true)
        return {**{column: counts[key] for column, key in COUNT_COLUMNS.items()}, "count": counts}


def _refuse_stale(path, spaces: dict, bench) -> None:
    """Ablations kept in ``--work`` from before the shipped models were retrained would be scored against tokens
    they never saw: refuse them with the pack's own space check (``spaces.require_same_space``)."""
    sp = _pack("moviedreamer_core.spaces")
    try:
        sp.require_same_space("token", sp.TokenSpace.from_dict(spaces["token_space"]), bench.tokenizer.space,
                              str(path), "the shipped tokenizer")
        if spaces.get("identity_space"):  # the no-identity ablation has none
            sp.require_same_space("identity", sp.EmbeddingSpace.from_dict(spaces["identity_space"]), bench.embedder.space,
                                  str(path), "the shipped identity embedder")
    except sp.SpaceMismatchError as e:
        raise SystemExit(f"{e}: delete --work (or choose another) to retrain the ablations") from None


def ensure_dataset(bench, folder: Path, **options) -> Path:
    """The planner dataset of the training films in ``folder`` with ``write_planner_dataset``'s ``options``: reused
    when ``folder`` holds one (refused when it was made with other spaces), else written."""
    if (folder / "index.json").is_file():
        _refuse_stale(folder / "index.json", json.loads((folder / "index.json").read_text(encoding="utf-8")), bench)
    else:
        _log(f"planner dataset {folder.name}")
        _pack("moviedreamer_core.toycinema.planner_data").write_planner_dataset(
            bench.planner_films, str(folder), bench.text, bench.embedder, bench.tokenizer.token_encoder(),
            held_out=bench.watched_films, **options)
    return folder


def ensure_planner(bench, data: Path, out: Path, row: str, steps=None, **run) -> str:
    """The planner trained on ``data`` into ``out`` (``train_toy_planner``'s ``run`` options: variant, subset): reused
    when ``out`` holds one (refused when it was trained in other spaces), else trained."""
    path = out / "planner.safetensors"
    if path.is_file():
        cfg = _pack("moviedreamer_core.planner.checkpoint").read_planner_config(str(path))
        _refuse_stale(path, {"token_space": cfg.token_space, "identity_space": cfg.identity_space}, bench)
        return str(path)
    _log(f"training planner: {row}")
    return str(bench.runs.train_toy_planner(str(data), str(out), steps=steps, log=None, **run))


def ensure_planners(bench, args) -> dict:
    """Train (or reuse) the planner ablations in ``--work``; returns ``{row name: planner path}``."""
    work = Path(args.work)
    for identities in (True, False):
        ensure_dataset(bench, work / ("data" if identities else "data_no_identity"), identities=identities)
    plans = {"no identity embeddings": ("data_no_identity", "no_identity", None),
             "no history": ("data", "no_history", None),
             f"regularised, {args.subset} films": ("data", "full", args.subset),
             f"no anti-overfitting, {args.subset} films": ("data", "no_regularisation", args.subset)}
    paths = {}
    for row, (data, variant, subset) in plans.items():
        if args.train_only and args.train_only != f"{variant}{'_subset' if subset else ''}":
            continue
        out = work / f"planner_{variant}{'_' + str(subset) if subset else ''}"
        paths[row] = ensure_planner(bench, work / data, out, row, args.planner_steps, variant=variant, subset=subset)
    return paths


def ensure_plain_renderer(args) -> Path:
    """The decoder trained without identity conditioning (its own tokenizer, UNet and renderer)."""
    out = Path(args.work) / "decoder_no_identity"
    if not (out / "moviedreamer" / "toycinema_renderer.safetensors").is_file():
        _log("training the decoder without identity conditioning")
        tr = _pack("cli.toycinema_train")
        tr.main(["--out", str(out), "--stages", "decoder", "--no-identity", "--films", str(args.train_films),
                 "--decoder-steps", str(args.decoder_steps)])
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import_host(comfyui_folder(args.comfyui))
    import_pack()
    import torch

    threads_mod = _pack("moviedreamer_core.threads")
    torch.set_num_threads(threads_mod.configured_threads(args.threads, default=threads_mod.SMALL_MODEL_THREADS))
    os.makedirs(args.work, exist_ok=True)
    bench = Bench(args)
    if args.train_only:
        ensure_planners(bench, args)
        return 0
    results: dict = {}
    started = time.perf_counter()

    true_tokens = bench.runs.true_tokens(bench.films, bench.tokenizer.token_encoder())
    results["ground truth keyframes"] = bench.score([f.images(32) for f in bench.films])
    _log("decoding true tokens")
    results["true tokens, identity renderer"] = bench.score(bench.frames(true_tokens))
    results["true tokens, identity switched off"] = bench.score(bench.frames(true_tokens, identity_weight=0.0))
    if not (args.skip_plain_decoder or args.skip_ablations):
        plain = ensure_plain_renderer(args)
        saved = (bench.model, bench.tokenizer)
        bench.model = bench.toy.load_toy_unet(str(plain / bench.toy.UNET_FILE))
        plain_tokenizer = _pack("moviedreamer_core.toycinema.tokenizer").ToyTokenizer.load(str(plain / bench.toy.TOKENIZER_FILE))
        plain_renderer = bench.host.managed(_pack("moviedreamer_core.renderer").load_renderer(
            str(plain / "moviedreamer" / bench.toy.RENDERER_FILE)))
        results["true tokens, renderer trained without identities"] = bench.score(
            bench.frames(bench.runs.true_tokens(bench.films, plain_tokenizer.token_encoder()), renderer=plain_renderer,
                         identities=False))
        bench.model, bench.tokenizer = saved

    readout_films = bench.train_films[:READOUT_FILMS]  # both token readouts are fitted on their true tokens
    readout_tokens = bench.runs.true_tokens(readout_films, bench.tokenizer.token_encoder())
    readout = bench.runs.TokenReadout.fit(readout_tokens, [f.labels() for f in readout_films])
    readouts, planned = {}, {}
    planners = {SHIPPED_ROW: bench.planner_path}
    if not args.skip_ablations:
        planners.update(ensure_planners(bench, args))
    zero_shot = _pack("moviedreamer_core.planner.zero_shot").ZeroShotPrior()
    for row, planner in [*planners.items(), ("zero-shot prior (no training)", zero_shot)]:
        _log(f"planning and decoding: {row}")
        tokens = bench.runs.plan_films(planner, bench.films, bench.text, bench.embedder, bench.tokenizer.token_encoder(),
                                       names="per_film")  # the same scripts for every row, named as in training
        results[row] = bench.score(bench.frames(tokens))
        readouts[row] = bench.runs.token_readout_scores(readout, tokens, bench.labels)
        planned.setdefault(row, tokens)
    readouts["true tokens"] = bench.runs.token_readout_scores(readout, true_tokens, bench.labels)
    token_state = state_from_tokens(bench, planned[SHIPPED_ROW], true_tokens, readout_films, readout_tokens)
    _log("identity swap: two characters' reference portraits exchanged in every film, planned and decoded")
    swaps = bench.swaps()
    swapped = bench.runs.plan_films(bench.planner_path, bench.films, bench.text, bench.embedder,
                                    bench.tokenizer.token_encoder(), names="per_film", swaps=swaps)
    identity_swap = bench.swap_score(bench.frames(swapped, swaps=swaps), swaps)

    seconds = time.perf_counter() - started
    what = {"dev": "the development set", "test": "the test set"}.get(args.films_set, "fresh films")
    print(f"\nToy cinema benchmark: {args.films} held-out films of seed {args.films_seed} ({what}), "
          f"{sum(f.n_keyframes for f in bench.films)} keyframes, {args.steps} sampling steps at cfg {args.cfg} "
          f"({seconds:.0f} s, {torch.get_num_threads()} thread(s))\n")
    print("| keyframes | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for row, s in results.items():
        print(f"| {row} | " + " | ".join(_cell(s[c]) for c in COLUMNS) + " |")
    print_count_table(results)
    if identity_swap["close_ups"]:
        print(f"\nIdentity swap (two characters' reference portraits exchanged per film; {identity_swap['close_ups']} "
              f"single-character close-ups of them): the figure drawn is the portrait's character in "
              f"{identity_swap['moved_with_portrait']:.2f}, the script's own in {identity_swap['kept_script_character']:.2f}")
    else:  # a few films may have none to score (it printed "in nan")
        print("\nIdentity swap: these films have no single-character close-up of the two characters to score (null)")
    print("\nPlanned tokens read directly (a readout fitted on true tokens of training films):\n")
    keys = list(next(iter(readouts.values())).keys())
    print("| tokens | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for row, s in readouts.items():
        print(f"| {row} | " + " | ".join(f"{s[k]:.2f}" if isinstance(s[k], float) else str(s[k]) for k in keys) + " |")
    print("\nThe unscripted state read from the shipped planner's tokens (a readout fitted on true tokens of training "
          "films; no decoder in between):\n")
    print("| tokens | unscripted state | unscripted light | unscripted hat |\n|---|---|---|---|")
    for row, u in token_state.items():
        print(f"| {row} | " + " | ".join(_cell(u[k]) for k in ("unscripted_state", "unscripted_look", "unscripted_hat")) + " |")
    summary = summary_line(results, args, bench, seconds, identity_swap)
    summary["tokens_unscripted_state"] = _rounded(token_state[FREE_RUNNING]["unscripted_state"])
    summary["tokens_unscripted_state_true_history"] = _rounded(token_state[TRUE_HISTORY]["unscripted_state"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"images": results, "tokens": readouts, "token_state": token_state, "summary": summary}, f, indent=1)
    print(json.dumps(summary))  # the last line: one JSON object
    return 0


def _cell(x) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


def print_count_table(results: dict) -> None:
    """Exact cast / extra figures / missing figures per camera size and per number of characters on screen."""
    truth = next(iter(results.values()))["count"]
    groups = [("by_camera", k, k) for k in truth["by_camera"]] + [
        ("by_count", k, f"{k} on screen") for k in truth["by_count"]]
    print("\nRead place by place, per camera size and per number of characters on screen (exact cast / extra figures / "
          "missing figures):\n")
    print("| keyframes | " + " | ".join(f"{name} ({truth[part][k]['keyframes']})" for part, k, name in groups) + " |")
    print("|---" * (len(groups) + 1) + "|")
    for row, s in results.items():
        cells = []
        for part, k, _ in groups:
            g = s["count"][part].get(k)
            cells.append(" / ".join(_cell(g[key]) for key in ("exact_cast", "extra_figures", "missing_figures")) if g else "-")
        print(f"| {row} | " + " | ".join(cells) + " |")


SUMMARY_KEYS = {"exact_cast": "exact cast", "extra_figures_wide": "extra figures, wide", "missing_figures": "missing figures",
                "doubled": "drawn twice", "camera": "camera", "location": "location",
                "location_background": "location, background", "character_f1": "character F1",
                "exact_set": "exact set", "identity_consistency": "identity consistency",
                "unscripted_state": "unscripted state", "unscripted_look": "unscripted look", "unscripted_hat": "unscripted hat"}


def state_from_tokens(bench, shipped_tokens, true_tokens, readout_films, readout_tokens) -> dict:
    """The unscripted state (``scores.unscripted_scores``) read from tokens by a ``planner_runs.StateReadout`` fitted on
    ``readout_tokens`` (the true tokens of ``readout_films``, training films): the shipped planner's tokens as planned
    for rendering (each keyframe after its own earlier ones), the same planner's tokens planned from the *true* tokens of the keyframes before each
    (``plan_given_history``), and the true tokens (the readout's ceiling). The gap between the first two is what the
    planner loses by reading its own imperfect keyframes; the gap between the second and the ceiling, what it cannot
    read even from perfect history."""
    encoder = bench.tokenizer.token_encoder()
    readout = bench.runs.StateReadout.fit(readout_tokens, readout_films)
    _log("planning every keyframe from the true keyframes before it")
    given = bench.runs.plan_films(bench.planner_path, bench.films, bench.text, bench.embedder, encoder, names="per_film",
                                  true_history=True)
    return {FREE_RUNNING: bench.runs.token_state_scores(readout, shipped_tokens, bench.films),
            TRUE_HISTORY: bench.runs.token_state_scores(readout, given, bench.films),
            "true tokens": bench.runs.token_state_scores(readout, true_tokens, bench.films)}


def _rounded(x):
    """``x`` to 4 places, or ``None`` for a score with nothing to count (``nan``): the JSON line stays plain JSON."""
    return None if x is None or x != x else round(float(x), 4)


def summary_line(results: dict, args, bench, seconds: float, identity_swap: dict) -> dict:
    """The last line's object: the shipped planner's row (planned tokens, rendered), the true tokens' and the ground
    truth's under their own keys, ``unscripted_chance`` (what a guess knowing nothing of the film reaches on the same
    items), ``identity_swap`` and, with the ablations, ``unscripted_state_no_history``."""

    def row(name: str) -> dict:
        s = results[name]
        out = {key: _rounded(s[col]) for key, col in SUMMARY_KEYS.items()}
        out["by_camera"] = {cam: round(g["exact_cast"], 4) for cam, g in s["count"]["by_camera"].items()}
        return out

    planned = next(name for name in results if name.startswith("planner (shipped"))
    summary = {"films_seed": args.films_seed, "films_set": args.films_set, "films": args.films,
               "keyframes": sum(f.n_keyframes for f in bench.films), "steps": args.steps, "cfg": args.cfg,
               "seconds": round(seconds, 1), "row": planned, **row(planned),
               "unscripted_chance": _rounded(results[planned]["unscripted"]["unscripted_chance"]),
               "identity_swap": _rounded(identity_swap["moved_with_portrait"]),
               "true_tokens": row("true tokens, identity renderer"), "ground_truth": row("ground truth keyframes")}
    if "no history" in results:
        summary["unscripted_state_no_history"] = _rounded(results["no history"]["unscripted state"])
    return summary


def stopped(argv=None) -> int:
    """``main``; a Ctrl-C says what is kept instead of a traceback (exit 130, as a shell reports a SIGINT): the ablations
    already trained stay in ``--work`` and are reused by the next run; the scores of this run are lost (it prints them
    only at its end)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("stopped: nothing scored yet is kept; the planner ablations already trained stay in --work and the next "
              "run reuses them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(stopped())
