"""The autoregressive keyframe planner (MovieDreamer paper section 3.3).

A decoder-only transformer (the transformers library's LLaMA, fed with ``inputs_embeds``) reads the
multimodal script and every earlier keyframe's visual tokens, and predicts the next keyframe's tokens with
a Gaussian-mixture head. It never sees words: text arrives as sentence embeddings, faces as identity
embeddings, keyframes as continuous visual tokens, each through its own input projection.

Sequence layout (one story)::

    header    STYLE(style)
              for each character c:  DESC(description_c) + slot_c,  IDENT(identity_c) + slot_c,
                                     [REF(reference token r) + slot_c  for few-shot references]
    keyframe  ACTION(text) SCENE(text) KSTYLE(text)            <- the keyframe's text segments
    (each)    KIDENT(identity_c) + slot_c (+ MENTION)  for c on screen  <- who is in the shot
              BOI (+ CAMERA(camera))                            <- "begin of image": predicts token 0
              TOKEN_0 + tpos_0 ... TOKEN_{K-1} + tpos_{K-1}     <- token j predicts token j+1

Every element is ``type_embedding + value``; the value is a projected sentence, identity or token (or a
learned null when the script is dropped for classifier-free guidance). A *slot* embedding binds an
identity to the keyframes its character appears in; slots are permuted at random per training story, so
they carry "same character as in the header" and nothing else (names never enter the model).

Optional per-keyframe inputs (``PlannerConfig.inputs``, declared in the planner file): ``camera`` adds a learned
embedding of the shot's camera (``inputs.CAMERAS``; row 0 for "not stated" and for the unconditional stream) to
the keyframe's BOI element; ``mentions`` adds to each on-screen character's KIDENT element the projected embedding
of what the keyframe's action says of that character (``script/mentions.py``: the sentence-level stand-in for the
paper's face-next-to-the-name, so "Ava, in a purple hat, and Bo walk in" binds the hat to Ava's face), nothing when
the action does not name it or the script is dropped. Neither changes the sequence layout or length. A planner
whose file declares no inputs (every file written before this field) reads neither.

The hidden state at BOI predicts token 0, the hidden state at TOKEN_j predicts token j+1 (teacher forcing
during training, sampling at generation, see ``generate.py``). Tokens are modelled in a normalised space
(per-dimension mean and std of the training data, kept as buffers and saved with the weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..embeds import SEGMENTS
from .config import PlannerConfig
from .inputs import CAMERAS, Story, collate, nearest_cameras
from .mixture import Mixture, MixtureHead, mixture_loss
from .scene_bank import snap_empty_actions, snap_to_bank

# Element types of the sequence. The keyframe text segments (action, scene, style) follow as types
# N_TYPES .. N_TYPES+S-1, one embedding each.
STYLE, DESC, IDENT, REF, KIDENT, BOI, TOKEN = range(7)
N_TYPES = 7
TEXT_TYPE_OFFSET = N_TYPES


def _llama_config(cfg: PlannerConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=1, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta, attention_dropout=cfg.attention_dropout,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
    )


@dataclass
class Conditioning:
    """How one pass reads the script. ``identity(c)`` gives the vector for one appearance of character c."""

    cond: bool  # False: the script is replaced by learned nulls (the unconditional stream of CFG)
    slots: torch.Tensor  # [C] slot index per character
    identity: Callable[[int], Optional[torch.Tensor]]  # [Di] or None when the character has no identity
    mask_history: float = 0.0  # probability that a token *input* is replaced by the mask embedding
    # (set from the config in training; an evaluation can set 1.0 to hide all visual history)
    history_noise: float = 0.0  # std of Gaussian noise added to token *inputs* (normalised space) in training
    text_noise: float = 0.0  # std of Gaussian noise on keyframe text embeddings in training (relative to their RMS)
    use_references: bool = True
    # history-mask randomness; None: the global torch RNG (``loss`` sets it when given one generator per story,
    # so a story's regularisers do not depend on its batch neighbours or on the number of processes)
    generator: Optional[torch.Generator] = None


class KeyframePlanner(nn.Module):
    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        from transformers import LlamaModel

        self.cfg = cfg
        H, S = cfg.hidden_size, cfg.text_segments
        self.text_in = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, H))
        self.identity_in = nn.Sequential(nn.LayerNorm(cfg.identity_dim), nn.Linear(cfg.identity_dim, H))
        self.token_in = nn.Linear(cfg.D, H)
        self.type_emb = nn.Embedding(N_TYPES + S, H)
        self.slot_emb = nn.Embedding(cfg.max_characters, H)
        self.token_pos = nn.Embedding(cfg.K, H)
        self.null = nn.Parameter(torch.zeros(N_TYPES + S, H))
        self.no_identity = nn.Parameter(torch.zeros(H))
        self.mask_embedding = nn.Parameter(torch.zeros(H))
        # the shot's camera (inputs.CAMERAS + 1 rows; row 0: not stated / script dropped), only when declared
        self.camera_emb = nn.Embedding(len(CAMERAS) + 1, H) if cfg.reads("camera") else None
        # a camera value no training film stated is read at the nearest one they did (its row never trained)
        self.camera_rows = [0] + [i + 1 for i in nearest_cameras(cfg.cameras)]  # a list: no tensor in the state
        self.drop = nn.Dropout(cfg.dropout)
        self.backbone = LlamaModel(_llama_config(cfg))
        self.head = MixtureHead(H, cfg.D, cfg.mixture_components, cfg.min_sigma)
        self.register_buffer("token_mean", torch.zeros(cfg.D))
        self.register_buffer("token_std", torch.ones(cfg.D))
        nn.init.normal_(self.null, std=0.02)
        nn.init.normal_(self.no_identity, std=0.02)
        nn.init.normal_(self.mask_embedding, std=0.02)
        # what the action says of each on-screen character, added to its KIDENT element, only when declared. Made
        # last, so a planner without it draws every other initial weight from the seed exactly as before it existed
        self.mention_in = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, H)) \
            if cfg.reads("mentions") else None
        if cfg.fixed_style:  # the one style of every training film (``planning_story``); a buffer, saved in the file
            self.register_buffer("fixed_style", torch.zeros(cfg.text_dim))
        if cfg.scene_bank:  # the training films' distinct scene sentences (``planning_story``, ``planner/scene_bank.py``)
            self.register_buffer("scene_bank", torch.zeros(cfg.scene_bank, cfg.text_dim))
        if cfg.empty_bank:  # the actions of the training films' keyframes with nobody on screen (``planning_story``)
            self.register_buffer("empty_bank", torch.zeros(cfg.empty_bank, cfg.text_dim))

    def planning_story(self, story: Story) -> Story:
        """``story`` as this planner plans it. A planner whose training films all had one style (``cfg.fixed_style``)
        learnt nothing from the style but that one value: any other one, or none, is an input it never saw, and
        the toy cinema's planner drew a one-character shot with two or three figures when a script left out the
        toy style or wrote its own. Such a planner plans every script in its training style (the header's style and
        every keyframe's style segment); the script's style still reaches the renderer's prompt.

        A planner that keeps its training films' scene sentences (``cfg.scene_bank``) plans each keyframe's scene as
        the nearest of them (``planner/scene_bank.py``: a new phrasing of a place it trained on, not another place), and
        one that keeps the actions of its training films' empty keyframes (``cfg.empty_bank``) plans the action of each
        keyframe with nobody on screen as the one of those nearest its action and scene (``snap_empty_actions``:
        "Morning comes." with nobody there was drawn with a figure by a planner whose empty training shots all said
        "nobody")."""
        if not self.cfg.fixed_style and not self.cfg.scene_bank and not self.cfg.empty_bank:
            return story
        text = story.keyframe_text.clone()
        style = story.style
        if self.cfg.fixed_style:
            style = self.fixed_style.to(story.style.device, story.style.dtype)
            text[:, SEGMENTS.index("style")] = style
        if self.cfg.scene_bank:
            scene = SEGMENTS.index("scene")
            text[:, scene] = snap_to_bank(text[:, scene], self.scene_bank, self.cfg.snap_keep)
        if self.cfg.empty_bank:
            text = snap_empty_actions(text, story.keyframe_characters, self.empty_bank)
        return dataclasses.replace(story, style=style, keyframe_text=text)

    # ------------------------------------------------------------------------------------ token space

    def set_token_stats(self, tokens: torch.Tensor) -> None:
        """Fix the normalisation from training tokens ``[..., D]`` (per-dimension mean and std)."""
        flat = tokens.reshape(-1, tokens.shape[-1]).float()
        self.token_mean.copy_(flat.mean(0))
        self.token_std.copy_(flat.std(0).clamp_min(1e-4) if flat.shape[0] > 1 else torch.ones_like(flat[0]))

    def normalise(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens - self.token_mean) / self.token_std

    def denormalise(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * self.token_std + self.token_mean

    @property
    def param_device(self) -> torch.device:
        """Where the weights are (not named ``device``: the host's ModelPatcher sets that attribute)."""
        return self.token_mean.device

    # ---------------------------------------------------------------------------- sequence elements

    def _typed(self, kind: int, value: Optional[torch.Tensor], cond: bool) -> torch.Tensor:
        """``type + value`` for conditioning elements; the learned null replaces the value when dropped."""
        t = self.type_emb.weight[kind]
        return t + (value if (cond and value is not None) else self.null[kind])

    def _identity_value(self, ctx: Conditioning, c: int) -> torch.Tensor:
        vec = ctx.identity(c)
        if vec is None:
            return self.no_identity
        return self.identity_in(vec.to(self.param_device, torch.float32))

    def _boi(self, story: Story, ctx: Conditioning, keyframes=None) -> torch.Tensor:
        """BOI rows ``[n, H]`` of keyframes ``keyframes`` (default: all): the BOI type, plus the camera embedding
        when the planner reads the camera (row 0 when the keyframe states none or the script is dropped)."""
        ids = story.camera_ids()
        if keyframes is not None:
            ids = ids[keyframes]
        boi = self.type_emb.weight[BOI].expand(ids.shape[0], -1)
        if self.camera_emb is None:
            return boi
        rows = (torch.tensor(self.camera_rows, device=ids.device)[(ids + 1).clamp_min(0)] if ctx.cond
                else torch.zeros_like(ids))
        return boi + self.camera_emb(rows.to(self.param_device))

    def _mentions(self, story: Story, at: list) -> torch.Tensor:
        """``[A, H]``: the projected mention of each (keyframe, on-screen place) of ``at``, zero where the keyframe's
        action does not name that character (``embed_condition`` adds nothing there)."""
        dev = self.param_device
        width = story.mention_present.shape[1]
        if width == 0:
            return torch.zeros(len(at), self.cfg.hidden_size, device=dev)
        inside = [p < width for _, p in at]
        i = torch.tensor([k for k, _ in at], dtype=torch.long)
        p = torch.tensor([min(q, width - 1) for _, q in at], dtype=torch.long)
        present = story.mention_present[i, p] & torch.tensor(inside, dtype=torch.bool)
        rows = self.mention_in(story.keyframe_mentions[i, p].to(dev, torch.float32))
        return rows * present.to(dev, rows.dtype)[:, None]

    def embed_header(self, story: Story, ctx: Conditioning) -> torch.Tensor:
        """``[L_header, H]``: style, then each character's description, identity and few-shot references."""
        dev = self.param_device
        rows = [self._typed(STYLE, self.text_in(story.style.to(dev)), ctx.cond)]
        desc = self.text_in(story.descriptions.to(dev)) if story.n_characters else None
        for c in range(story.n_characters):
            slot = self.slot_emb.weight[ctx.slots[c]]
            rows.append(self._typed(DESC, desc[c], ctx.cond) + slot)
            rows.append(self._typed(IDENT, self._identity_value(ctx, c), ctx.cond) + slot)
            refs = story.reference_tokens[c] if (ctx.use_references and story.reference_tokens) else None
            if refs is not None and refs.shape[0]:
                r = self.token_in(self.normalise(refs.to(dev).float())) + self.token_pos.weight  # [r, K, H]
                for row in r.reshape(-1, r.shape[-1]):
                    rows.append(self._typed(REF, row, ctx.cond) + slot)
        return torch.stack(rows)

    def embed_condition(self, story: Story, i: int, ctx: Conditioning) -> torch.Tensor:
        """``[n_i, H]``: keyframe i's text segments, on-screen identities, then BOI."""
        dev = self.param_device
        text = story.keyframe_text[i].to(dev)
        if ctx.cond and ctx.text_noise > 0:
            text = self._noisy_text(text, ctx, self._standard_noise(ctx, text.shape))
        text = self.text_in(text)
        rows = [self._typed(TEXT_TYPE_OFFSET + s, text[s], ctx.cond) for s in range(text.shape[0])]
        for p, c in enumerate(story.keyframe_characters[i]):
            row = self._typed(KIDENT, self._identity_value(ctx, c), ctx.cond) + self.slot_emb.weight[ctx.slots[c]]
            mention = story.mention(i, p) if (self.mention_in is not None and ctx.cond) else None
            rows.append(row if mention is None else row + self.mention_in(mention.to(dev, torch.float32)))
        rows.append(self._boi(story, ctx, torch.tensor([i]))[0])
        return torch.stack(rows)

    def embed_tokens(self, tokens: torch.Tensor, ctx: Optional[Conditioning] = None, first: int = 0) -> torch.Tensor:
        """``[k, H]`` inputs for normalised tokens ``[k, D]`` at token positions ``first..first+k-1``."""
        pos = self.token_pos.weight[first:first + tokens.shape[0]]
        tokens = tokens.to(self.param_device)
        if ctx is not None and ctx.history_noise > 0:
            tokens = tokens + ctx.history_noise * self._standard_noise(ctx, tokens.shape)
        x = self.type_emb.weight[TOKEN] + self.token_in(tokens) + pos
        if ctx is not None and ctx.mask_history > 0:
            masked = self._history_mask(ctx, tokens.shape[0])
            x = torch.where(masked[:, None], self.type_emb.weight[TOKEN] + self.mask_embedding + pos, x)
        return x

    def _history_mask(self, ctx: Conditioning, k: int) -> torch.Tensor:
        """``[k]`` bool: which of k token inputs history masking hides (from ``ctx.generator`` when it has one)."""
        if ctx.generator is not None:
            return (torch.rand(k, generator=ctx.generator) < ctx.mask_history).to(self.param_device)
        return torch.rand(k, device=self.param_device) < ctx.mask_history

    def _standard_noise(self, ctx: Conditioning, shape) -> torch.Tensor:
        """Standard normal noise of ``shape`` for token or text inputs (from ``ctx.generator`` when it has one)."""
        if ctx.generator is not None:
            return torch.randn(shape, generator=ctx.generator).to(self.param_device)
        return torch.randn(shape, device=self.param_device)

    @staticmethod
    def _noisy_text(text: torch.Tensor, ctx: Conditioning, noise: torch.Tensor) -> torch.Tensor:
        """Text embeddings plus ``ctx.text_noise`` times their own RMS times ``noise`` (standard normal, drawn by the
        caller from ``ctx``'s source): a script's sentences arrive in phrasings training never showed, and a planner
        that read only the few training phrasings' exact vectors maps a new one to another place (issue #21)."""
        scale = text.float().pow(2).mean(-1, keepdim=True).sqrt()
        return text + ctx.text_noise * scale * noise.to(text.device, text.dtype)

    # --------------------------------------------------------------------------------- conditioning

    def make_conditioning(self, story: Story, *, train: bool, cond: bool = True,
                          generator: Optional[torch.Generator] = None) -> Conditioning:
        """The identity/slot binding for one pass. In training mode the regularisers apply (each switchable
        in the config): random slot permutation, identity randomisation, condition dropout, history masking."""
        cfg = self.cfg
        C = story.n_characters
        if C > cfg.max_characters:
            raise ValueError(f"the story has {C} characters; this planner has {cfg.max_characters} character slots")
        means, has = story.identity_means(cfg.identity_dim)
        if train and cfg.slot_permutation:
            slots = torch.randperm(cfg.max_characters, generator=generator)[:C]
        else:
            slots = torch.arange(C)
        if train and cfg.condition_dropout > 0 and torch.rand((), generator=generator) < cfg.condition_dropout:
            cond = False

        if train and cfg.identity_randomisation:
            def identity(c: int):
                bank = story.identity_banks[c]
                if bank.shape[0] == 0:
                    return None
                row = bank[torch.randint(bank.shape[0], (), generator=generator)].float()
                row = row + cfg.identity_noise * torch.randn(row.shape, generator=generator)
                return F.normalize(row, dim=0)
        else:
            def identity(c: int):
                return means[c] if bool(has[c]) else None

        return Conditioning(cond=cond, slots=slots, identity=identity,
                            mask_history=cfg.history_mask_ratio if train else 0.0,
                            history_noise=cfg.history_noise if train else 0.0,
                            text_noise=cfg.text_noise if train else 0.0)

    # ------------------------------------------------------------------------------------- training

    def build_sequence(self, story: Story, ctx: Conditioning,
                       inputs: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced sequence of a story with tokens: embeddings ``[L, H]``, the positions whose hidden
        states predict a token ``[N*K]``, and the normalised targets ``[N*K, D]``.

        The same rows as ``embed_header`` + ``embed_condition(i)`` + ``embed_tokens`` for every keyframe i (and
        the same draws from ``ctx``'s random source, in the same order), built with one projection per kind of
        element and one gather instead of a few dozen small tensors per keyframe: a training step of a small
        planner was mostly autograd bookkeeping for those (forward and backward), not transformer compute."""
        assert story.tokens is not None, "training stories need their keyframes' tokens"
        dev = self.param_device
        K, N = self.cfg.K, story.n_keyframes
        header = self.embed_header(story, ctx)
        targets = self.normalise(story.tokens.to(dev).float())  # [N, K, D]
        given = targets if inputs is None else inputs.to(dev).reshape(targets.shape)  # the token inputs
        S = story.keyframe_text.shape[1]

        # the random draws, in embed_condition/embed_tokens order: keyframe i's text noise, its identities, then its
        # history noise and mask
        appearances, vectors, masks, noise, named, text_noise = [], [], [], [], [], []
        for i in range(N):
            if ctx.cond and ctx.text_noise > 0:
                text_noise.append(self._standard_noise(ctx, story.keyframe_text[i].shape))
            for p, c in enumerate(story.keyframe_characters[i]):
                appearances.append(c)
                vectors.append(ctx.identity(c))
                named.append((i, p))
            if ctx.history_noise > 0:
                noise.append(self._standard_noise(ctx, targets[i].shape))
            if ctx.mask_history > 0:
                masks.append(self._history_mask(ctx, K))

        types = self.type_emb.weight
        text_kinds = torch.arange(TEXT_TYPE_OFFSET, TEXT_TYPE_OFFSET + S, device=dev)
        if ctx.cond:
            text = story.keyframe_text.to(dev)
            if text_noise:
                text = self._noisy_text(text, ctx, torch.stack(text_noise))
            text = self.text_in(text) + types[text_kinds]  # [N, S, H]
        else:
            text = (types[text_kinds] + self.null[text_kinds]).expand(N, S, -1)
        A = len(appearances)
        if A:
            if ctx.cond:  # projected identities, then the learned no-identity row for characters without photos
                known = [v for v in vectors if v is not None]
                rows = [self.identity_in(torch.stack(known).to(dev, torch.float32))] if known else []
                choice, k = [], 0
                for v in vectors:
                    choice.append(k if v is not None else len(known))
                    k += v is not None
                values = torch.cat(rows + [self.no_identity[None]])[torch.tensor(choice, device=dev)]
            else:
                values = self.null[KIDENT].expand(A, -1)
            slots = ctx.slots.to(dev)[torch.tensor(appearances, device=dev, dtype=torch.long)]
            kident = types[KIDENT] + values + self.slot_emb.weight[slots]
            if ctx.cond and self.mention_in is not None and story.keyframe_mentions is not None:
                kident = kident + self._mentions(story, named)
        else:
            kident = types[KIDENT][None][:0]  # [0, H]
        pos = self.token_pos.weight[:K]
        given = given + ctx.history_noise * torch.stack(noise) if noise else given
        tok = types[TOKEN] + self.token_in(given) + pos  # [N, K, H]
        if masks:
            tok = torch.where(torch.stack(masks)[..., None], types[TOKEN] + self.mask_embedding + pos, tok)

        # one gather from [header | text | identities | BOI | tokens] in sequence order
        boi = self._boi(story, ctx)  # [N, H]
        pool = torch.cat([header, text.reshape(N * S, -1), kident, boi, tok.reshape(N * K, -1)])
        text_at, kident_at, boi_at = header.shape[0], header.shape[0] + N * S, header.shape[0] + N * S + A
        tok_at = boi_at + N
        index = list(range(header.shape[0]))
        predict = []
        a = 0
        for i in range(N):
            n = len(story.keyframe_characters[i])
            index += range(text_at + i * S, text_at + (i + 1) * S)
            index += range(kident_at + a, kident_at + a + n)
            a += n
            predict += [len(index) + j for j in range(K)]  # BOI, then tokens 0..K-2
            index.append(boi_at + i)
            index += range(tok_at + i * K, tok_at + (i + 1) * K)
        seq = pool[torch.tensor(index, device=dev)]
        return seq, torch.tensor(predict, device=dev), targets.reshape(-1, targets.shape[-1])

    def build_sequence_row_by_row(self, story: Story, ctx: Conditioning,
                                  inputs: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``build_sequence`` as generation assembles it: the header, then per keyframe ``embed_condition`` and
        ``embed_tokens``. The reference ``build_sequence`` must equal (tests/core/test_planner.py) and is timed
        against (benchmarks/planner_train_step.py, which puts it in ``build_sequence``'s place: same arguments);
        training uses the batched one."""
        K = self.cfg.K
        targets = self.normalise(story.tokens.to(self.param_device).float())
        given = targets if inputs is None else inputs.to(self.param_device).reshape(targets.shape)
        parts, predict = [self.embed_header(story, ctx)], []
        length = parts[0].shape[0]
        for i in range(story.n_keyframes):
            cond, tok = self.embed_condition(story, i, ctx), self.embed_tokens(given[i], ctx)
            predict += [length + cond.shape[0] - 1 + j for j in range(K)]
            parts += [cond, tok]
            length += cond.shape[0] + tok.shape[0]
        return torch.cat(parts), torch.tensor(predict, device=self.param_device), targets.reshape(-1, targets.shape[-1])

    def run_backbone(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                     position_ids: Optional[torch.Tensor] = None, cache=None) -> torch.Tensor:
        kwargs = {"inputs_embeds": x, "attention_mask": attention_mask, "position_ids": position_ids}
        if cache is not None:
            kwargs[_CACHE_KWARG] = cache
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        return self.backbone(**kwargs).last_hidden_state

    def loss(self, stories: list[Story], generator=None) -> dict:
        """Mixture NLL + auxiliary terms over a batch of stories (padded to the longest).

        ``generator``: one ``torch.Generator`` for the whole batch, or a list with one per story; with a list,
        each story's regularisers (slots, identity draws, condition dropout, history masking) come from its own
        generator only (``moviedreamer_core.train`` relies on this for identical runs on any number of processes).
        """
        train = self.training
        per_story = isinstance(generator, (list, tuple))
        if per_story and len(generator) != len(stories):
            raise ValueError(f"{len(generator)} generators for {len(stories)} stories")
        ctxs = []
        for b, story in enumerate(stories):
            ctx = self.make_conditioning(story, train=train, generator=generator[b] if per_story else generator)
            if per_story:
                ctx.generator = generator[b]
            ctxs.append(ctx)
        own = self._own_predictions(stories, ctxs) if train and self.cfg.scheduled_sampling > 0 else None
        hidden, targets = self.teacher_forced(stories, ctxs, own, dropout=True)
        mix = self.head(torch.cat(hidden))
        cfg = self.cfg
        return mixture_loss(mix, torch.cat(targets), cfg.nll_weight, cfg.l2_weight, cfg.cosine_weight)

    def teacher_forced(self, stories: list[Story], ctxs: list[Conditioning], inputs: Optional[list] = None, *,
                       dropout: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One teacher-forced pass over a batch of stories (padded to the longest): per story, the hidden states
        that predict its tokens ``[N*K, H]`` and its normalised targets ``[N*K, D]``. ``inputs``: per story the token
        inputs (``build_sequence``'s; ``None``: the true tokens); ``dropout``: the input and output dropout of
        training (``loss``)."""
        seqs, preds, targets = [], [], []
        for story, ctx, given in zip(stories, ctxs, inputs or [None] * len(stories)):
            seq, pred, tgt = self.build_sequence(story, ctx, given)
            seqs.append(seq)
            preds.append(pred)
            targets.append(tgt)
        x, mask = collate(seqs)
        h = self.run_backbone(self.drop(x) if dropout else x, attention_mask=mask)
        if dropout:
            h = self.drop(h)
        return [h[b, p] for b, p in enumerate(preds)], targets

    @torch.no_grad()
    def _own_predictions(self, stories: list[Story], ctxs: list[Conditioning]) -> list[torch.Tensor]:
        """Scheduled sampling (``cfg.scheduled_sampling``), the parallel form of Duckworth et al. 2019: one
        teacher-forced pass without gradient predicts every token (the most likely component's mean, as generation
        plans at temperature 0), and each keyframe's token *inputs* are replaced by those predictions with
        probability ``scheduled_sampling`` (targets stay the true tokens). At generation the planner reads its own
        earlier keyframes, which are smoother than true tokens; trained only on true ones, it copied a character's
        hat or a place's light from its own history far less often than from true history (toy cinema, issue #21).
        Returns per story the normalised token inputs ``[N, K, D]``."""
        hidden, truths = self.teacher_forced(stories, ctxs)
        out = []
        for b, (story, ctx) in enumerate(zip(stories, ctxs)):
            mean = self.head(hidden[b]).sample(0.0, None)  # temperature 0: the most likely component's mean
            N, K = story.n_keyframes, self.cfg.K
            if ctx.generator is not None:
                swap = torch.rand(N, generator=ctx.generator) < self.cfg.scheduled_sampling
            else:
                swap = torch.rand(N) < self.cfg.scheduled_sampling
            swap = swap.to(self.param_device)[:, None, None]
            out.append(torch.where(swap, mean.reshape(N, K, -1), truths[b].reshape(N, K, -1)))
        return out

    def predict(self, h: torch.Tensor) -> Mixture:
        return self.head(h)

    def enable_activation_checkpointing(self) -> None:
        """Recompute each transformer layer in backward (memory for compute: ``train.gradient_checkpointing`` of the
        paper-scale config). transformers 5 renamed ``gradient_checkpointing_enable`` to
        ``activation_checkpointing_enable`` (the old name warns and goes in v6); earlier releases have only the old."""
        if hasattr(self.backbone, "activation_checkpointing_enable"):
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    @property
    def activation_checkpointing(self) -> bool:
        """Whether the backbone recomputes its layers in backward (``enable_activation_checkpointing``)."""
        backbone = self.backbone
        if hasattr(backbone, "is_activation_checkpointing"):
            return bool(backbone.is_activation_checkpointing)
        return bool(backbone.is_gradient_checkpointing)

    @classmethod
    def from_pretrained_llama(cls, folder: str, **config_overrides) -> "KeyframePlanner":
        """A planner whose transformer starts from a local LLaMA checkpoint (the paper's 7B setting).

        ``folder`` is a transformers model folder (``config.json`` + ``*.safetensors``); nothing is downloaded
        and only safetensors weights are read. The backbone's sizes come from the checkpoint; the input
        projections, type/slot embeddings and the mixture head start fresh (``config_overrides`` sets the
        spaces and everything else).
        """
        from transformers import LlamaModel

        model = cls(cls.config_from_llama(folder, **config_overrides))
        pretrained = LlamaModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("embed_tokens")}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("embed_tokens")]
        if missing or unexpected:
            raise ValueError(f"{folder} does not fit a LLaMA backbone: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model

    @staticmethod
    def config_from_llama(folder: str, **config_overrides) -> PlannerConfig:
        """The ``PlannerConfig`` that ``from_pretrained_llama(folder, **config_overrides)`` builds (reads only
        ``config.json``; lets a training process build the model on the meta device while rank 0 loads it)."""
        from transformers import LlamaConfig

        llama_cfg = LlamaConfig.from_pretrained(folder, local_files_only=True)
        cfg = PlannerConfig(**{
            **config_overrides,
            "hidden_size": llama_cfg.hidden_size, "num_layers": llama_cfg.num_hidden_layers,
            "num_heads": llama_cfg.num_attention_heads,
            "num_kv_heads": getattr(llama_cfg, "num_key_value_heads", None) or llama_cfg.num_attention_heads,
            "intermediate_size": llama_cfg.intermediate_size,
            "max_positions": llama_cfg.max_position_embeddings,
        })
        rope = getattr(llama_cfg, "rope_theta", None) or (getattr(llama_cfg, "rope_parameters", None) or {}).get("rope_theta")
        if rope:
            cfg.rope_theta = float(rope)
        return cfg


def _cache_kwarg() -> str:
    import inspect

    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


_CACHE_KWARG = _cache_kwarg()

