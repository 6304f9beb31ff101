"""MovieDreamerTrainRenderer: train the identity renderer on your own keyframes, inside ComfyUI.

In the manner of the host's own training nodes (``comfy_extras/nodes_train.py``): the user's MODEL stays
frozen; only the renderer adapter (token projector, identity projector, decoupled key/value pairs, paper
sections 3.2 and 3.4) trains, with the paper's anti-overfitting recipe (kornia augmentations applied before
encoding; identity-embedding randomisation). Images are encoded once (latents by the VAE, tokens by CLIP
Vision, captions by the text encoder, identities by the chosen face embedder), then ``fit_renderer`` runs.
The result is a MovieDreamer renderer file in ``models/moviedreamer`` that the renderer loader lists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from comfy_api.latest import io, ui

from ..moviedreamer_core.file_kinds import RENDERER
from ..moviedreamer_core.files import remove_stale_temp_files, removed_temp_files_text
from ..moviedreamer_core.identity.base import NoFaceFoundError
from ..moviedreamer_core.paths import safe_folder_name
from ..moviedreamer_core.renderer import RendererAdapter, RendererConfig, save_renderer
from ..moviedreamer_core.data.clustering import DEFAULT_THRESHOLD
from ..moviedreamer_core.renderer.fit import RendererSample, fit_renderer
from ..moviedreamer_core.renderer.fit_state import clear_fit_state, inputs_fingerprint, state_path
from ..moviedreamer_core.renderer.identity_banks import attach_identity_banks, character_groups
from ..moviedreamer_core.renderer.sample_cache import clear_samples, load_samples, samples_path, save_samples
from ..moviedreamer_core.renderer.train import augment_images
from ..moviedreamer_core.renderer_training_ranges import CHOICES, RANGES
from . import host, wire_types
from .choices import check_inputs, reported_under, validated_widgets_only
from .attention_patch import discover_cross_attention
from .face_embedders import FACE_EMBEDDER_CHOICES, FACE_EMBEDDER_TOOLTIP, make_face_embedder
from .model_fingerprints import fingerprint as model_fingerprint
from .render_nodes import TOKEN_SOURCES, RendererHandle
from .renderer_training import make_denoiser, training_latents


def _bounds(name: str) -> dict:
    """``default``, ``min`` and ``max`` of the input ``name`` (``renderer_training_ranges``: the command's too)."""
    r = RANGES[name]
    return {"default": r.default, "min": r.minimum, "max": r.maximum}


def _captions(text: str, n: int) -> list[str]:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    if len(lines) <= 1:
        return [lines[0] if lines else ""] * n
    if len(lines) != n:
        raise ValueError(f"captions: give one line per image ({n} images) or a single line for all; got {len(lines)} lines")
    return lines


def character_names(text: str, n: int) -> Optional[list[str]]:
    """The ``characters`` input: ``None`` when empty (group by face clustering), else one name per image (a single
    line names every image; a blank line or ``-``: nobody known on that image)."""
    lines = [l.strip() for l in (text or "").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not any(lines):
        return None
    if len(lines) == 1:
        return lines * n
    if len(lines) != n:
        raise ValueError(f"characters: give one name per line, one line per image ({n} images), or a single name for all; "
                         f"got {len(lines)} lines")
    return ["" if l == "-" else l for l in lines]


def _loss_curve(losses: list[float], size=(320, 160)) -> torch.Tensor:
    """The loss per step as a small image (the node's second output and its preview)."""
    w, h = size
    img = Image.new("RGB", size, (24, 24, 24))
    d = ImageDraw.Draw(img)
    if len(losses) > 1:
        arr = np.log(np.maximum(np.asarray(losses, dtype=np.float64), 1e-12))
        k = max(1, len(arr) // 200)
        smooth = np.convolve(arr, np.ones(k) / k, mode="valid")
        lo, hi = float(smooth.min()), float(smooth.max()) or 1.0
        pts = [(8 + i * (w - 16) / max(len(smooth) - 1, 1), h - 8 - (v - lo) / ((hi - lo) or 1.0) * (h - 24))
               for i, v in enumerate(smooth)]
        d.line(pts, fill=(120, 200, 255), width=2)
    d.text((8, 4), f"loss {losses[0]:.4f} -> {losses[-1]:.4f} ({len(losses)} steps)" if losses else "no steps", fill=(220, 220, 220))
    return torch.from_numpy(np.array(img)).float().div(255)[None]


@validated_widgets_only
class MovieDreamerTrainRenderer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerTrainRenderer",
            display_name="Train Identity Renderer (MovieDreamer)",
            category=wire_types.CATEGORY + "/training",
            description="Trains a MovieDreamer renderer on your keyframes over your frozen SD1.5/SDXL model: the "
            "renderer learns to rebuild each keyframe from its visual tokens, text and the face identity of who is on "
            "screen (MovieDreamer sections 3.2, 3.4). Saves models/moviedreamer/<save_name>.safetensors. Cancelled "
            "or crashed, it continues where it stopped when queued again.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5/SDXL model the renderer is for (frozen; only the renderer trains)."),
                io.Vae.Input("vae", tooltip="Its VAE: encodes the keyframes into the latents the renderer learns to rebuild."),
                io.Clip.Input("clip", tooltip="Its text encoder: encodes the captions."),
                io.ClipVision.Input("clip_vision", tooltip="The CLIP Vision model whose embeddings are the keyframe tokens "
                                    "(the planner must plan in the same token space)."),
                io.Image.Input("images", tooltip="The training keyframes (any number; more and more varied is better)."),
                io.String.Input("captions", default="", multiline=True,
                                tooltip="One caption per line, one line per image (or a single line for all images)."),
                io.Combo.Input("face_embedder", options=FACE_EMBEDDER_CHOICES, default=CHOICES["face_embedder"].default,
                               tooltip=FACE_EMBEDDER_TOOLTIP + " Use the same embedder as ScriptEncode will; images without "
                               "a face train without identity."),
                io.Combo.Input("token_source", options=TOKEN_SOURCES, default=CHOICES["token_source"].default,
                               tooltip="image_embeds: one pooled token per keyframe (a linear token projector). "
                               "penultimate_hidden_states: every patch feature through a perceiver resampler."),
                io.Int.Input("steps", **_bounds("steps"), tooltip="Optimisation steps."),
                io.Int.Input("batch_size", **_bounds("batch_size"), tooltip="Keyframes per step."),
                io.Float.Input("learning_rate", **_bounds("learning_rate"), step=1e-6, tooltip="AdamW learning rate."),
                io.Int.Input("augmentations", **_bounds("augmentations"),
                             tooltip="Augmented copies per image (flip, crop, colour jitter), encoded once before training."),
                io.Float.Input("identity_noise", **_bounds("identity_noise"), step=0.01,
                               tooltip="Identity-embedding randomisation: noise added to each identity at every step "
                               "(on top of the identity drawn from another photo of the character, see characters)."),
                io.Int.Input("context_tokens", **_bounds("context_tokens"), tooltip="Context tokens made from a keyframe's tokens."),
                io.Int.Input("identity_tokens", **_bounds("identity_tokens"), tooltip="Context tokens made from a face identity."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Seed of initialisation, batches and noise."),
                io.String.Input("save_name", default="moviedreamer_renderer",
                                tooltip="File name in models/moviedreamer (.safetensors is added). A training of the "
                                "same inputs that was cancelled or crashed under this name continues where it stopped, "
                                "without encoding the images again (its state and its encoded samples are kept beside "
                                "the file as <name>.safetensors.resume and .samples until it finishes)."),
                wire_types.Renderer.Input("init_renderer", optional=True,
                                     tooltip="Optional: continue training this MovieDreamer renderer instead of a new one."),
                io.String.Input("characters", default="", multiline=True, optional=True,
                                tooltip="Who is on each image, for identity randomisation (the paper's): one name per "
                                "line, one line per image (a single line: one character on every image; a blank line "
                                "or '-': nobody known). At every step an image's face identity is replaced by the "
                                "identity of ANOTHER photo of the same character, then identity_noise is added; an "
                                "image without a detected face borrows its character's identity. Empty: photos are "
                                "grouped into characters by clustering their face embeddings (character_threshold)."),
                io.Float.Input("character_threshold", **_bounds("character_threshold"), step=0.01, optional=True,
                               tooltip="Without character names: photos whose face embeddings lie within this cosine "
                               "distance (average linkage, as the dataset builder groups a film's faces) are one "
                               "character. 0.07 suits dlib; other embedders spread a person wider (a low value only "
                               "splits: those photos then keep their own identity). 0: no grouping, noise only."),
            ],
            outputs=[
                wire_types.Renderer.Output("renderer", display_name="renderer", tooltip="The trained renderer (also saved)."),
                io.Image.Output("loss_curve", display_name="loss_curve", tooltip="The training loss per step."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        found = check_inputs(cls, kwargs)
        if found is True and isinstance(kwargs.get("save_name"), str):  # refused before a step is trained
            problem = host.model_save_problem(renderer_file_name(kwargs["save_name"]), RENDERER)
            if problem is not None:
                return reported_under(kwargs, "save_name", f"save_name: {problem}")
        return found

    @classmethod
    def execute(cls, model, vae, clip, clip_vision, images, captions, face_embedder, token_source, steps, batch_size,
                learning_rate, augmentations, identity_noise, context_tokens, identity_tokens, seed, save_name,
                init_renderer=None, characters="", character_threshold=DEFAULT_THRESHOLD) -> io.NodeOutput:
        texts = _captions(captions, int(images.shape[0]))
        names = character_names(characters, int(images.shape[0]))
        handle, curve, text = train_renderer(
            model, vae, clip, clip_vision, images, texts, face_embedder=face_embedder, token_source=token_source,
            steps=steps, batch_size=batch_size, learning_rate=learning_rate, augmentations=augmentations,
            identity_noise=identity_noise, context_tokens=context_tokens, identity_tokens=identity_tokens, seed=seed,
            save_name=save_name, init_renderer=init_renderer, characters=names, character_threshold=character_threshold)
        return io.NodeOutput(handle, curve, ui=ui.PreviewText(text))


def renderer_file_name(save_name: str) -> str:
    """The file a ``save_name`` is saved as in ``models/moviedreamer``: cleaned to a plain file name, ``.safetensors``."""
    return safe_folder_name(save_name.removesuffix(".safetensors"), "moviedreamer_renderer") + ".safetensors"


def encode_text(clip, text: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A caption as the host's CLIPTextEncode encodes it: ``(cross-attention context [L, C], pooled output [P] or
    None)``; SDXL-family models read the pooled output (with the image size) through their ADM input."""
    cond, extras = clip.encode_from_tokens_scheduled(clip.tokenize(text))[0]
    pooled = extras.get("pooled_output")
    return cond.float().cpu()[0], (pooled.float().cpu()[0] if pooled is not None else None)


def encode_training_samples(model, vae, clip, clip_vision, images, texts: list[str], embedder, *,
                            token_source: str = "image_embeds", augmentations: int = 0,
                            generator: Optional[torch.Generator] = None, characters: Optional[list[str]] = None,
                            character_threshold: float = DEFAULT_THRESHOLD, progress=None,
                            keep: Optional[tuple[str, str]] = None) -> tuple[list[RendererSample], dict]:
    """Every image (and ``augmentations`` augmented copies of it) as a training sample, encoded once: latents by
    the VAE in the scale the MODEL denoises (``training_latents``), tokens by CLIP Vision, the caption as the
    host's text encode gives it, the face identity by ``embedder``; then each sample's identity bank from the
    other photos of its character (``identity_banks``: ``characters`` names, else face clustering at
    ``character_threshold``). Returns the samples and counts: ``found`` (samples with a face of their own),
    ``reused`` (whether they were read from ``keep``) and those of ``attach_identity_banks``.

    ``keep``: ``(path, fingerprint)`` of the encoded samples of this training (``sample_cache``): when that file
    holds this training's samples they are read from it (and ``generator`` set to its state after the encoding),
    else they are encoded and written there."""
    n = int(images.shape[0])
    cached = load_samples(keep[0], fingerprint=keep[1]) if keep is not None else None
    if cached is not None and len(cached[0]) != n * (augmentations + 1):  # not these images' samples after all
        cached = None
    if cached is not None:
        samples, state, _ = cached
        found = sum(s.identity is not None for s in samples)  # as encoded: only a found face gives an identity
        if generator is not None:
            generator.set_state(state)
        if progress is not None:
            progress(len(samples))
    else:
        samples, found = _encode(model, vae, clip, clip_vision, images, texts, embedder, token_source=token_source,
                                 augmentations=augmentations, generator=generator, progress=progress)
        if keep is not None:
            try:
                save_samples(keep[0], samples, fingerprint=keep[1],
                             generator=generator if generator is not None else torch.Generator())
            except OSError as e:  # a full disk costs a resume its head start, not the training
                logging.warning("MovieDreamer: the encoded samples could not be kept in %s (%s); a continued "
                                "training will encode them again", keep[0], e)
    photos = [i for _ in range(augmentations + 1) for i in range(n)]
    originals = [samples[i].identity for i in range(n)]  # the un-augmented photos' identities
    groups = character_groups(originals, characters, character_threshold)
    counts = attach_identity_banks(samples, photos, groups)
    return samples, dict(counts, found=found, reused=cached is not None)


def _encode(model, vae, clip, clip_vision, images, texts: list[str], embedder, *, token_source: str,
            augmentations: int, generator: Optional[torch.Generator], progress) -> tuple[list[RendererSample], int]:
    """The samples of ``encode_training_samples`` without banks, encoded; and how many have a face."""
    n = int(images.shape[0])
    variants = [images[:, :, :, :3].float().cpu()]
    variants += [augment_images(variants[0], generator) for _ in range(augmentations)]
    samples, found = [], 0
    text_cache = {}
    with torch.no_grad():  # the encoders are frozen: no graph may reach back into them
        for batch in variants:
            for i in range(n):
                image = batch[i:i + 1]
                latents = training_latents(model, vae.encode(image)).float().cpu()[0]
                out = clip_vision.encode_image(image)
                tokens = (out.image_embeds[:, None] if token_source == "image_embeds" else out.penultimate_hidden_states)
                if texts[i] not in text_cache:
                    text_cache[texts[i]] = encode_text(clip, texts[i])
                context, pooled = text_cache[texts[i]]
                identity = None
                try:
                    identity = torch.from_numpy(embedder.embed((image[0].clamp(0, 1) * 255).round().byte().numpy())).float()
                    found += 1
                except NoFaceFoundError:
                    pass
                samples.append(RendererSample(latents, tokens.float().cpu()[0], context, identity, pooled=pooled))
                if progress is not None:
                    progress(len(samples))
    return samples, found


def train_renderer(model, vae, clip, clip_vision, images, texts: list[str], *, face_embedder: str = "dlib",
                   token_source: str = "image_embeds", steps: int = 500, batch_size: int = 4, learning_rate: float = 1e-4,
                   augmentations: int = 4, identity_noise: float = 0.05, context_tokens: int = 4, identity_tokens: int = 4,
                   seed: int = 0, save_name: str = "moviedreamer_renderer", init_renderer=None,
                   characters: Optional[list[str]] = None, character_threshold: float = DEFAULT_THRESHOLD,
                   on_step=None) -> tuple[RendererHandle, torch.Tensor, str]:
    """Encode the keyframes, fit a renderer, save it: the node's work, also called by ``cli/train_renderer.py``.

    ``images`` is a ComfyUI IMAGE batch, ``texts`` one caption per image, ``characters`` one character name per
    image (or ``None``: group the photos by clustering their faces; see ``encode_training_samples``). Returns the
    renderer handle, the loss curve image and a one-line summary. ``on_step(step, steps, loss)`` is optional
    (the script prints). Every random draw comes from ``seed`` through local generators: torch's global
    generator is left as it was."""
    n = int(images.shape[0])
    if len(texts) != n:
        raise ValueError(f"{len(texts)} captions for {n} images")
    if characters is not None and len(characters) != n:
        raise ValueError(f"{len(characters)} character names for {n} images")
    file_name = renderer_file_name(save_name)
    problem = host.model_save_problem(file_name, RENDERER)
    if problem is not None:
        raise ValueError(f"save_name: {problem}")
    path = host.model_save_path(file_name)
    # a training killed (kill -9, a crash) while it wrote its samples, its state or the renderer left the temporary
    # file beside them: nobody removed it (an SDXL state's is up to 8.3 GB) and the loaders offered a .safetensors
    # one. Only names files.atomic_path makes and nobody is writing (their writer's flock) are removed.
    removed = remove_stale_temp_files(os.path.dirname(path))
    if removed:
        logging.info("MovieDreamer: %s",
                     removed_temp_files_text(removed, f"a killed training left in {os.path.dirname(path)}"))
    embedder = make_face_embedder(face_embedder, clip_vision)
    layers = discover_cross_attention(model)
    frozen = model_fingerprint(model)  # the frozen model the loss goes through, as given (before training patches it)
    # what the samples are encoded from (fit_state: an interrupted run of the same training is continued)
    inputs = inputs_fingerprint({"images": images}, {
        "captions": list(texts), "characters": characters, "character_threshold": character_threshold,
        "face_embedder": face_embedder, "token_source": token_source, "augmentations": augmentations, "seed": int(seed),
        "vae": model_fingerprint(vae), "clip": model_fingerprint(clip), "clip_vision": model_fingerprint(clip_vision)})
    progress = host.Progress(n * (augmentations + 1) + steps)
    # ---- encode every (augmented) image once
    generator = torch.Generator().manual_seed(int(seed))
    # an interrupted run of this same training kept them beside its state (sample_cache): read, not encoded again
    keep = (samples_path(path), inputs_fingerprint({}, {"inputs": inputs, "model": frozen}))
    samples, counts = encode_training_samples(model, vae, clip, clip_vision, images, texts, embedder,
                                              token_source=token_source, augmentations=augmentations, generator=generator,
                                              characters=characters, character_threshold=character_threshold,
                                              progress=progress, keep=keep)
    found, done = counts["found"], len(samples)
    with torch.inference_mode(False), torch.enable_grad():  # the executor runs nodes in inference mode
        # ---- the adapter
        if init_renderer is not None:
            adapter = init_renderer.adapter
            if not adapter.cfg.token_path or adapter.needs_face_states:
                raise ValueError(f"{init_renderer.name} ({adapter.cfg.source}) cannot be trained here; start a new renderer")
            adapter = RendererAdapter(adapter.cfg)
            adapter.load_state_dict(init_renderer.adapter.state_dict())
        else:
            dim = int(samples[0].tokens.shape[-1])
            context = layers[0].context_dim
            resampler = None
            if token_source != "image_embeds":
                width = min(context, 1024)
                resampler = dict(dim=width, depth=2, dim_head=64, heads=max(width // 64, 1), num_queries=context_tokens,
                                 embedding_dim=dim, output_dim=context, ff_mult=2)
            config = RendererConfig(
                token_space={"source": f"clip_vision.{token_source}", "K": 1 if resampler is None else 0, "D": dim},
                context_dim=context, layer_dims=[l.inner_dim for l in layers], context_tokens=context_tokens,
                identity_space=embedder.space.to_dict() if found else None, identity_tokens=identity_tokens,
                resampler=resampler, extra={"trained_on": n, "steps": steps})
            # torch initialises modules from its global generator: fork it, seeded from ours, so the result is
            # reproducible and the caller's generator state is untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**63 - 1, (), generator=generator)))
                adapter = RendererAdapter(config)

        def step_done(step: int, total: int, loss: float) -> None:
            progress(done + step)
            if on_step is not None:
                on_step(step, total, loss)

        patcher = host.managed(adapter)
        host.load_for_training(model, patcher)
        device = host.torch_device()
        adapter.to(device)
        denoise = make_denoiser(model, patcher)
        sampling = model.get_model_object("model_sampling")
        sigma_range = (float(sampling.sigma_min), float(sampling.sigma_max))
        # an interrupted run of this same training left its state beside the file: continue it (fit_state)
        settings = {"model": frozen, "inputs": inputs, "config": {k: v for k, v in asdict(adapter.cfg).items() if k != "extra"}}
        fit = fit_renderer(adapter, samples, denoise, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                           sigma_range=sigma_range, identity_noise=identity_noise, seed=seed, device=device,
                           progress=step_done, resume=state_path(path), settings=settings, fingerprint_samples=False)
    adapter.cpu()
    save_renderer(adapter, path)
    clear_fit_state(path)
    clear_samples(path)
    losses = fit.losses
    curve = _loss_curve(losses)
    banks = (f"identity from another photo of the character for {counts['banked']} samples "
             f"({counts['characters']} character{'' if counts['characters'] == 1 else 's'}"
             f"{', ' + str(counts['lent']) + ' without a face of their own' if counts['lent'] else ''}); "
             if counts["banked"] else "")
    if fit.resumed_from:
        reused = ", from the samples it encoded" if counts["reused"] else ""
        resumed = f" (continued from step {fit.resumed_from}, where an interrupted run stopped{reused})"
    else:
        resumed = " (from the samples an interrupted run encoded)" if counts["reused"] else ""
    cleaned = f"; {removed_temp_files_text(removed, 'a killed training left')}" if removed else ""
    text = (f"{file_name}: {steps} steps{resumed} on {len(samples)} samples ({n} images x {augmentations + 1}); "
            f"{found} with a face; {banks}evaluation loss {fit.eval_before:.4f} -> {fit.eval_after:.4f}{cleaned}")
    return RendererHandle(file_name, host.managed(adapter)), curve, text
