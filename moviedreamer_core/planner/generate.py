"""Planning a storyboard: KV-cached autoregressive decoding with a bounded context (paper section 3.3).

For each keyframe the planner reads the keyframe's conditions (its sentences and who is on screen), then
samples its K visual tokens one by one from the mixture head, each fed back as input for the next.

**KV cache.** Keys and values of everything already read are kept (transformers' ``DynamicCache`` with the
append-in-place layers of ``kv_cache.py``), so each step only runs the new elements through the transformer.
A keyframe takes K steps: its conditions with BOI (whose output predicts token 0), then each sampled token
(whose output predicts the next); the last token is fed with the next keyframe's conditions.

**Bounded context (sliding window).** The script header always stays; of the keyframes only the most
recent ones are kept. The cache holds the header plus keyframes ``start .. i-1``; when that reaches
``2W`` keyframes, it is rebuilt from scratch as header + the last ``W`` keyframes, with positions
renumbered from 0 (the planner was trained on such windows: a header followed by any run of keyframes).
Each rebuild costs about W keyframes of work and happens once every W keyframes, so the work and memory
per keyframe stay flat however long the movie is; attention never spans more than header + 2W keyframes.

**Guidance.** With ``guidance != 1`` a second, unconditional stream (script replaced by the learned
nulls, visual history kept) runs in the same batch, and the mixtures are combined as in
``Mixture.guided``.

**Determinism.** Keyframe i samples from its own ``torch.Generator`` seeded with
``derive_seed(seed, i)`` on the CPU, so the same seed and inputs give bit-identical tokens.

**Interruption.** ``progress(done, total)`` is called after every keyframe; if it raises (the host's
cancel), generation stops there, within one keyframe.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..embeds import ScriptEmbeds
from ..spaces import EmbeddingSpace, SpaceMismatchError, TokenSpace, require_same_space
from ..storyboard import Storyboard, derive_seed
from .inputs import Story, story_from_embeds
from .kv_cache import new_cache
from .model import KeyframePlanner


def check_spaces(planner_cfg, embeds: ScriptEmbeds, planner_name: str) -> None:
    """Refuse script embeddings from encoders the planner was not trained on."""
    where = f"the planner {planner_name}"
    require_same_space("text", EmbeddingSpace.from_dict(planner_cfg.text_space), embeds.text_space, where, "ScriptEncode")
    require_same_space("identity", EmbeddingSpace.from_dict(planner_cfg.identity_space), embeds.identity_space, where,
                       "ScriptEncode")


def check_references(planner_cfg, embeds: ScriptEmbeds, references: list, *, from_embeds: bool, planner_name: str) -> None:
    """Few-shot reference tokens must live in the planner's token space: ScriptEncode's by declared space,
    explicitly given ones by shape ``[r, K, D]`` (naming the character whose tokens do not fit)."""
    space = TokenSpace.from_dict(planner_cfg.token_space)
    if from_embeds and embeds.token_space is not None:
        require_same_space("token", space, embeds.token_space, f"the planner {planner_name}", "the reference tokens")
    for c, refs in enumerate(references):
        if refs is not None and (refs.ndim != 3 or tuple(refs.shape[1:]) != (space.K, space.D)):
            raise SpaceMismatchError(
                f"token space mismatch: the planner {planner_name} expects {space.describe()}, but the reference tokens "
                f"of {embeds.characters[c].name} have shape {tuple(refs.shape)} (want [n, {space.K}, {space.D}])")


class _Streams:
    """The conditional (and optionally unconditional) streams decoded side by side as one batch.

    With a window, every keyframe's input embeddings are kept (for at most the last 2W keyframes), so a
    window rebuild is one forward pass over stored embeddings, with no re-embedding."""

    def __init__(self, model: KeyframePlanner, story: Story, guidance: float, use_cache: bool, keep: bool = True):
        self.model, self.story, self.use_cache, self.keep = model, story, use_cache, keep
        self.ctxs = [model.make_conditioning(story, train=False, cond=True)]
        if guidance != 1.0:
            self.ctxs.append(model.make_conditioning(story, train=False, cond=False))
        self.header = torch.stack([model.embed_header(story, c) for c in self.ctxs])
        self.kept: dict[int, torch.Tensor] = {}  # keyframe index -> its input embeddings [streams, n, H]
        self.current: list = []
        self.processed = 0  # sequence elements run through the backbone (per stream), rebuilds included
        self.reset([])

    def reset(self, keyframes: list) -> None:
        """Start over from the header plus the kept embeddings of ``keyframes`` (positions from 0)."""
        self.cache = new_cache(self.model) if self.use_cache else None
        self.length = 0
        self.fed = None  # without a cache: everything fed so far
        self.pending = torch.cat([self.header] + [self.kept[i] for i in keyframes], dim=1)
        self.kept = {i: self.kept[i] for i in keyframes}

    def _push(self, emb: torch.Tensor) -> None:
        self.current.append(emb)
        self.pending = torch.cat([self.pending, emb], dim=1)

    def push_condition(self, i: int) -> None:
        self._push(torch.stack([self.model.embed_condition(self.story, i, c) for c in self.ctxs]))

    def push_tokens(self, tokens: torch.Tensor, first: int) -> None:
        self._push(self.model.embed_tokens(tokens, first=first).expand(len(self.ctxs), -1, -1))

    def commit(self, i: int) -> None:
        """Keyframe i is complete: keep its embeddings for later window rebuilds."""
        if self.keep:
            self.kept[i] = torch.cat(self.current, dim=1)
        self.current = []

    def step(self) -> list:
        """Run the pending elements; return the last hidden state of each stream."""
        x = self.pending
        n = x.shape[1]
        if self.use_cache:
            pos = torch.arange(self.length, self.length + n, device=x.device)[None].expand(x.shape[0], -1)
            h = self.model.run_backbone(x, position_ids=pos, cache=self.cache)
        else:
            self.fed = x if self.fed is None else torch.cat([self.fed, x], dim=1)
            pos = torch.arange(self.fed.shape[1], device=x.device)[None].expand(x.shape[0], -1)
            h = self.model.run_backbone(self.fed, position_ids=pos)
        self.length += n
        self.processed += n if self.use_cache else self.fed.shape[1]
        self.pending = x[:, :0]
        return [h[s, -1] for s in range(h.shape[0])]


@torch.no_grad()
def plan_tokens(model: KeyframePlanner, story: Story, *, seed: int, temperature: float = 1.0, guidance: float = 1.0,
                window: Optional[int] = 16, use_cache: bool = True,
                progress: Optional[Callable[[int, int], None]] = None, stats: Optional[dict] = None) -> torch.Tensor:
    """Tokens ``[N, K, D]`` (de-normalised) for every keyframe of ``story``. ``window=None``: full history.

    ``stats`` (a dict, optional) receives the work done per keyframe: ``processed`` (sequence elements run
    through the backbone, window rebuilds included) and ``context`` (elements in context after the keyframe),
    which the tests and the benchmark read to show that the work stays flat."""
    story = model.planning_story(story)
    was_training = model.training
    model.eval()
    try:
        N, K = story.n_keyframes, model.cfg.K
        out = torch.zeros(N, K, model.cfg.D)
        streams = _Streams(model, story, guidance, use_cache, keep=bool(window))
        start = 0
        for i in range(N):
            if window and i - start >= 2 * window:
                start = i - window
                streams.reset(list(range(start, i)))
            gen = torch.Generator().manual_seed(derive_seed(seed, i))
            streams.push_condition(i)
            for j in range(K):
                h = streams.step()
                mix = model.predict(torch.stack(h))
                cond = type(mix)(mix.logits[:1], mix.mu[:1], mix.sigma[:1])
                if len(h) > 1:
                    cond = cond.guided(type(mix)(mix.logits[1:], mix.mu[1:], mix.sigma[1:]), guidance)
                token = cond.sample(temperature, gen)[0].float().cpu()
                out[i, j] = token
                streams.push_tokens(token[None], first=j)
            streams.commit(i)
            if stats is not None:
                stats.setdefault("processed", []).append(streams.processed)
                stats.setdefault("context", []).append(streams.length)
                streams.processed = 0
            if progress is not None:
                progress(i + 1, N)
        return model.denormalise(out.to(model.param_device)).cpu()
    finally:
        model.train(was_training)


@torch.no_grad()
def plan_given_history(model: KeyframePlanner, story: Story) -> torch.Tensor:
    """Tokens ``[N, K, D]`` (de-normalised) where keyframe i is planned from the *true* tokens of keyframes 0..i-1
    (``story.tokens``): next-keyframe prediction, each keyframe's own tokens chosen one after the other as
    ``plan_tokens`` does at temperature 0 (the most likely component's mean), full history, no guidance.

    An evaluation, not a way to plan a movie: set beside ``plan_tokens``' free-running plan of the same story, it
    separates what the planner cannot read from a keyframe's context from what it loses by reading its own earlier,
    imperfect keyframes (exposure bias; ``benchmarks/toycinema.py``'s state read from tokens). Each keyframe runs
    its whole prefix through the backbone again (no cache): quadratic in the story's length, meant for held-out
    films of a few dozen keyframes."""
    if story.tokens is None:
        raise ValueError("plan_given_history needs the story's true tokens (story_from_embeds(..., tokens=...))")
    story = model.planning_story(story)
    was_training = model.training
    model.eval()
    try:
        ctx = model.make_conditioning(story, train=False)
        true = model.normalise(story.tokens.to(model.param_device).float())
        prefix = [model.embed_header(story, ctx)]
        out = []
        for i in range(story.n_keyframes):
            prefix.append(model.embed_condition(story, i, ctx))
            seq, own = torch.cat(prefix), []
            for j in range(model.cfg.K):
                h = model.run_backbone(seq[None])[0, -1:]
                token = model.predict(h).sample(0.0, torch.Generator())[0]
                own.append(token)
                seq = torch.cat([seq, model.embed_tokens(token[None], first=j)])
            out.append(torch.stack(own))
            prefix.append(model.embed_tokens(true[i]))
        return model.denormalise(torch.stack(out)).cpu() if out else torch.zeros(0, model.cfg.K, model.cfg.D)
    finally:
        model.train(was_training)


def generate_storyboard(planner, embeds: ScriptEmbeds, *, seed: int, temperature: float = 1.0, guidance: float = 1.0,
                        window: Optional[int] = 16, reference_tokens: Optional[list] = None,
                        progress: Optional[Callable[[int, int], None]] = None, planner_name: Optional[str] = None) -> Storyboard:
    """Plan every keyframe of a script; works for a learned ``KeyframePlanner`` and for ``ZeroShotPrior``."""
    from .zero_shot import ZeroShotPrior

    if isinstance(planner, ZeroShotPrior):
        tokens = planner.plan(embeds, seed=seed, temperature=temperature, reference_tokens=reference_tokens, progress=progress)
        space, name = planner.token_space_for(embeds, reference_tokens), planner.name
    else:
        name = planner_name or planner.cfg.name
        check_spaces(planner.cfg, embeds, name)
        story = story_from_embeds(embeds, reference_tokens)
        if story.reference_tokens is not None:
            check_references(planner.cfg, embeds, story.reference_tokens, from_embeds=reference_tokens is None,
                             planner_name=name)
        tokens = plan_tokens(planner, story, seed=seed, temperature=temperature, guidance=guidance, window=window,
                             progress=progress)
        space = TokenSpace.from_dict(planner.cfg.token_space)
    return Storyboard(
        tokens=tokens.float().contiguous(), token_space=space,
        keyframe_shot=tuple(k.shot_index for k in embeds.keyframes), shot_ids=tuple(k.shot_id for k in embeds.keyframes),
        planner_name=name, seed=int(seed), keyframe_seeds=tuple(derive_seed(seed, i) for i in range(embeds.n_keyframes)),
        script_hash=embeds.script_hash, content_hash=embeds.content_hash,
        params={"temperature": temperature, "guidance": guidance, "window": window},
    )
