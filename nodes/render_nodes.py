"""IdentityDiffusionRender, MovieDreamerRendererLoader and MovieDreamerKeyframeEncode.

The decoder side of MovieDreamer's diffusion autoencoder with identity-preserving rendering (paper sections
3.2 and 3.4), on the user's own SD1.5/SDXL model and the host's own samplers. Each keyframe is sampled on its
own seed (derived from the base seed, so re-rendering one keyframe reproduces it), written to the movie
project folder the moment it is decoded, and skipped on a rerun when nothing that determines it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from comfy_api.latest import io, ui

from ..moviedreamer_core.project import MovieProject
from ..moviedreamer_core.renderer import RendererAdapter, load_renderer
from ..moviedreamer_core.renderer.faceid import FACE_STATES_SOURCE
from ..moviedreamer_core.spaces import TokenSpace, require_same_space, require_token_space
from ..moviedreamer_core.storyboard import Storyboard, derive_seed
from . import host, wire_types
from .choices import check_inputs
from .storyboard_events import send_keyframe, send_storyboard
from .attention_patch import AdapterState, discover_cross_attention, patch_model
from .unconditional_tokens import black_image_tokens, unconditional_features

IPADAPTER_PREFIX = "ipadapter/"
TOKEN_SOURCES = ["image_embeds", "penultimate_hidden_states"]


@dataclass
class RendererHandle:
    """``MD_RENDERER``: the adapter under a ModelPatcher, with its file name."""

    name: str
    patcher: Any

    @property
    def adapter(self) -> RendererAdapter:
        return self.patcher.model

    @property
    def cfg(self):
        return self.patcher.model.cfg


def renderer_files() -> list[str]:
    return host.safetensors_files(host.MODEL_FOLDER) + [IPADAPTER_PREFIX + f for f in host.safetensors_files("ipadapter")]


class MovieDreamerRendererLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerRendererLoader",
            display_name="Load Identity Renderer (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Loads the renderer adapter that feeds keyframe tokens (and face identities) into your "
            "diffusion model: a MovieDreamer renderer file from models/moviedreamer, or an IP-Adapter file from "
            "models/ipadapter: plain (tokens in the clip_vision.image_embeds space), plus (penultimate states) or "
            "FaceID / FaceID plus v2 (identity only: InsightFace buffalo_l identities and, for plus, the face crops "
            "through CLIP Vision; load the FaceID LoRA on the MODEL with LoraLoaderModelOnly).",
            inputs=[io.Combo.Input("renderer_name", options=renderer_files(),
                                   tooltip="models/moviedreamer/*.safetensors, or ipadapter/<file> for an IP-Adapter "
                                   "(e.g. ip-adapter_sd15.safetensors or ip-adapter-faceid-plusv2_sd15.safetensors, "
                                   "with a ViT-H CLIP Vision).")],
            outputs=[wire_types.Renderer.Output("renderer", display_name="renderer", tooltip="The renderer adapter.")],
        )

    @classmethod
    def validate_inputs(cls, renderer_name=None, **kwargs):
        """Prompt-time check of the file choice (this host does not check V3 combo values itself)."""
        if renderer_name is None or renderer_name in renderer_files():
            return True
        folder = "models/ipadapter" if renderer_name.startswith(IPADAPTER_PREFIX) else "models/moviedreamer"
        return f'renderer file "{renderer_name.removeprefix(IPADAPTER_PREFIX)}" not found in {folder} (put the .safetensors file there)'

    @classmethod
    def execute(cls, renderer_name) -> io.NodeOutput:
        if renderer_name.startswith(IPADAPTER_PREFIX):
            path = host.model_path("ipadapter", renderer_name[len(IPADAPTER_PREFIX):])
        else:
            path = host.model_path(host.MODEL_FOLDER, renderer_name)
        adapter = load_renderer(path)
        cfg = adapter.cfg
        paths = (["tokens " + cfg.tokens.describe()] if cfg.token_path else []) + (
            ["identity " + cfg.identity.describe() + (" + face crops" if adapter.needs_face_states else "") + _places(cfg)]
            if cfg.identity is not None else [])
        text = f"{os.path.basename(renderer_name)} ({cfg.source}): " + ", ".join(paths)
        if cfg.source.startswith("ipadapter-faceid"):
            text += ". Load the matching FaceID LoRA on the MODEL (LoraLoaderModelOnly)."
        return io.NodeOutput(RendererHandle(os.path.basename(renderer_name), host.managed(adapter)), ui=ui.PreviewText(text))


def _places(cfg) -> str:
    """How the renderer reads a shot's character list (``RendererConfig.identity_slots`` and what goes with it)."""
    if not cfg.identity_slots:
        return ""
    extras = (["'nobody here' fillers"] if cfg.identity_empty_slots else []) + (
        ["place-aware queries"] if cfg.identity_positions else [])
    return f" (characters bound to {cfg.identity_slots} places, left to right" + "".join(", " + e for e in extras) + ")"


class MovieDreamerKeyframeEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerKeyframeEncode",
            display_name="Keyframe Encode (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Images to visual tokens (the keyframe tokenizer's encoder side): CLIP Vision's pooled "
            "image embedding, one token per image (token space clip_vision.image_embeds). Use it to render "
            "existing images through the renderer, or to build datasets.",
            inputs=[
                io.Image.Input("images", tooltip="The keyframe images, one token set per image."),
                io.ClipVision.Input("clip_vision", tooltip="The CLIP Vision model whose embeddings are the tokens."),
                io.Combo.Input("token_source", options=TOKEN_SOURCES, default=TOKEN_SOURCES[0], optional=True,
                               tooltip="image_embeds: one pooled embedding per image (plain IP-Adapters, the zero-shot "
                               "prior). penultimate_hidden_states: every patch feature (IP-Adapter plus and other "
                               "resampler renderers)."),
            ],
            outputs=[wire_types.Storyboard.Output("storyboard", display_name="storyboard",
                                             tooltip="The images' tokens as a storyboard (one keyframe per image).")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    def execute(cls, images, clip_vision, token_source=None) -> io.NodeOutput:
        source = token_source or TOKEN_SOURCES[0]
        rows = []
        for i in range(images.shape[0]):
            out = clip_vision.encode_image(images[i:i + 1])
            rows.append((out.image_embeds[:, None] if source == "image_embeds" else out.penultimate_hidden_states).float().cpu())
        tokens = torch.cat(rows)
        n, k, d = tokens.shape
        board = Storyboard(tokens=tokens.contiguous(), token_space=TokenSpace(f"clip_vision.{source}", k, d),
                           keyframe_shot=tuple(range(n)), shot_ids=tuple(f"image_{i}" for i in range(n)),
                           planner_name="keyframe_encode", seed=0, keyframe_seeds=tuple(0 for _ in range(n)),
                           script_hash="", content_hash=hashlib.sha256(tokens.numpy().tobytes()).hexdigest(),
                           null_tokens=black_image_tokens(clip_vision, source))
        return io.NodeOutput(board)


def _signature(parts: dict, *tensors: torch.Tensor | None) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for t in tensors:
        if t is not None:
            h.update(t.float().contiguous().numpy().tobytes())
        h.update(b"\x00")
    return h.hexdigest()


def _conditioning_digest(conditioning) -> str:
    """A digest of a connected CONDITIONING's tensors, so a keyframe rendered with it is reused on a rerun with
    the same conditioning and redone when it changes (e.g. another prompt upstream)."""
    h = hashlib.sha256()
    for entry in conditioning or []:
        tensors = [entry[0]] + [v for _, v in sorted(entry[1].items()) if isinstance(v, torch.Tensor)]
        for t in tensors:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps(sorted((k, v) for k, v in entry[1].items() if isinstance(v, (int, float, str, bool))),
                            default=str).encode())
    return h.hexdigest()[:16]


def _check_face_states(renderer: RendererHandle, script_embeds) -> None:
    """Before sampling: ScriptEncode kept face-crop features in the space this FaceID-plus renderer reads."""
    space, perceiver = script_embeds.face_state_space, renderer.cfg.identity_projector["perceiver"]
    if space is None:
        raise ValueError(f"the renderer {renderer.name} (IP-Adapter FaceID plus) also reads each character's face crop "
                         "through CLIP Vision: connect a CLIP Vision model (ViT-H for FaceID plus) to ScriptEncode's clip_vision")
    if space.source != FACE_STATES_SOURCE or space.D != perceiver["embedding_dim"]:
        raise ValueError(f"the renderer {renderer.name} reads face crops as {FACE_STATES_SOURCE} of width "
                         f"{perceiver['embedding_dim']}, but ScriptEncode's CLIP Vision gives {space.describe()}; "
                         "connect the CLIP Vision model this FaceID file was made for (ViT-H)")


def _downscale(vae) -> int:
    try:
        return int(vae.spacial_compression_encode())
    except (AttributeError, TypeError):
        return 8


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


class IdentityDiffusionRender(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="IdentityDiffusionRender",
            display_name="Identity Diffusion Render (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Renders every keyframe of the storyboard on your diffusion model: the keyframe's tokens and "
            "the on-screen characters' identities enter through decoupled cross-attention, its sentences through "
            "the text encoder (MovieDreamer sections 3.2, 3.4). Keyframes are saved to the movie project folder as "
            "they finish, and a rerun skips the ones already rendered.",
            inputs=[
                io.Model.Input("model", tooltip="Your SD1.5 or SDXL model (from the checkpoint loader)."),
                io.Vae.Input("vae", tooltip="The VAE that decodes the keyframes."),
                wire_types.Renderer.Input("renderer", tooltip="From Load Identity Renderer."),
                wire_types.Storyboard.Input("storyboard", tooltip="From AR Keyframe Planner (or Keyframe Encode)."),
                wire_types.ScriptEmbeds.Input("script_embeds", tooltip="From ScriptEncode: each keyframe's texts and the characters' identities."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Base seed; keyframe i renders with a seed derived from it and i."),
                io.Int.Input("steps", default=25, min=1, max=10000, tooltip="Sampling steps per keyframe."),
                io.Float.Input("cfg", default=6.0, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=host.sampler_names(), default="euler", tooltip="The host's sampler."),
                io.Combo.Input("scheduler", options=host.scheduler_names(), default="normal", tooltip="The host's noise schedule."),
                io.Int.Input("width", default=768, min=16, max=8192, step=8, tooltip="Keyframe width in pixels."),
                io.Int.Input("height", default=512, min=16, max=8192, step=8, tooltip="Keyframe height in pixels."),
                io.Float.Input("token_weight", default=0.8, min=0.0, max=3.0, step=0.05,
                               tooltip="Strength of the planned visual tokens (0 = ignore the storyboard)."),
                io.Float.Input("identity_weight", default=0.8, min=0.0, max=3.0, step=0.05,
                               tooltip="Strength of the on-screen characters' face identities (renderers with an identity path)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where in the denoising the adapter starts acting (0 = from the first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where it stops (1 = until the last step)."),
                io.String.Input("project_name", default="",
                                tooltip="Movie project folder under output/moviedreamer/ (empty = the script's title). "
                                "Finished keyframes there are reused on a rerun."),
                io.String.Input("negative_prompt", default="blurry, deformed, watermark, text", multiline=True,
                                tooltip="Negative text for every keyframe (ignored when a negative conditioning is connected)."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Text encoder for each keyframe's description (action, scene, characters, style). "
                              "Needed unless positive is connected."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="Optional: one positive conditioning for all keyframes instead of their own texts."),
                io.Conditioning.Input("negative", optional=True, tooltip="Optional: the negative conditioning."),
            ],
            outputs=[
                io.Image.Output("images", display_name="keyframes", tooltip="The rendered keyframes, in order."),
                io.Latent.Output("latent", display_name="latent", tooltip="Their latents."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    @host.pack_threads
    def execute(cls, model, vae, renderer, storyboard, script_embeds, seed, steps, cfg, sampler_name, scheduler, width,
                height, token_weight, identity_weight, start_percent, end_percent, project_name="", negative_prompt="",
                clip=None, positive=None, negative=None) -> io.NodeOutput:
        n = storyboard.n_keyframes
        negative_connected = negative is not None
        # ---- every check a user can trip, before any sampling
        use_tokens = renderer.cfg.token_path and token_weight != 0
        if renderer.cfg.token_path:
            require_token_space(renderer.cfg.tokens, storyboard.token_space, f"the renderer {renderer.name}", "the storyboard")
        if n != script_embeds.n_keyframes:
            raise ValueError(f"the storyboard has {n} keyframes but the script has {script_embeds.n_keyframes}")
        if storyboard.script_hash and storyboard.script_hash != script_embeds.script_hash:
            raise ValueError("the storyboard was planned for a different script than script_embeds (script hashes differ)")
        use_identity = identity_weight != 0 and renderer.cfg.identity is not None
        if use_identity:
            hint = (" (IP-Adapter FaceID files read InsightFace buffalo_l identities: choose face_embedder insightface "
                    "with models/insightface/models/buffalo_l)") if renderer.cfg.source.startswith("ipadapter-faceid") else ""
            require_same_space("identity", renderer.cfg.identity, script_embeds.identity_space,
                               f"the renderer {renderer.name}{hint}", "ScriptEncode")
        if not use_tokens and not use_identity and renderer.cfg.source.startswith("ipadapter-faceid"):
            raise ValueError(f"identity_weight is 0 and the renderer {renderer.name} (IP-Adapter FaceID) has no token "
                             "path: it would change nothing. Raise identity_weight, or use the plain sampler.")
        needs_faces = use_identity and renderer.adapter.needs_face_states
        if needs_faces:
            _check_face_states(renderer, script_embeds)
        if positive is None and clip is None:
            raise ValueError("connect a CLIP text encoder (each keyframe's own text) or a positive conditioning")
        if end_percent < start_percent:
            raise ValueError(f"end_percent ({end_percent}) is before start_percent ({start_percent})")
        layers = discover_cross_attention(model)
        dims = [l.inner_dim for l in layers]
        if dims != list(renderer.cfg.layer_dims) or layers[0].context_dim != renderer.cfg.context_dim:
            raise ValueError(f"the renderer {renderer.name} was made for a UNet with {len(renderer.cfg.layer_dims)} "
                             f"cross-attention layers (context {renderer.cfg.context_dim}); this MODEL has {len(dims)} "
                             f"(context {layers[0].context_dim}). Use a renderer for this model family (SD1.5 / SDXL).")

        project = MovieProject(host.output_directory(), project_name.strip() or script_embeds.title)
        project.set_script(script_embeds.script_hash, script_embeds.title)
        stale = project.retire_keyframes(n)  # keyframes past this storyboard's end leave the folder and the manifest
        sampling = model.get_model_object("model_sampling")
        sigma_start, sigma_end = sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)
        if negative is None:
            negative = clip.encode_from_tokens_scheduled(clip.tokenize(negative_prompt or ""))
        adapter = host.load_managed(renderer.patcher)
        uncond_tokens = None
        if use_tokens:
            with torch.no_grad():
                uncond_tokens = adapter.project_tokens(unconditional_features(renderer.cfg, storyboard))
        means = script_embeds.identity_means()
        progress = host.Progress(n)
        send_storyboard(script_embeds)
        images, latents = [], []
        for k in range(n):
            spec = script_embeds.keyframes[k]
            on_screen = [c for c in spec.characters if script_embeds.characters[c].has_identity]
            identity = means[on_screen] if (use_identity and on_screen) else None
            if use_identity and not spec.characters and adapter.has_empty_slots:
                identity = means[:0]  # nobody on screen: a renderer with "empty" places is told so (adapter.py)
            faces = None
            if needs_faces and on_screen and identity is not None:
                faces = torch.stack([script_embeds.characters[c].mean_face_states() for c in on_screen])
            prompt = script_embeds.prompt(k) if positive is None else None
            kseed = derive_seed(seed, k, "render")
            signature = _signature({"prompt": prompt, "seed": kseed, "steps": steps, "cfg": cfg, "sampler": sampler_name,
                                    "scheduler": scheduler, "size": [width, height], "weights": [token_weight, identity_weight],
                                    "range": [start_percent, end_percent], "renderer": renderer.name,
                                    "token_path": use_tokens,
                                    "negative": _conditioning_digest(negative) if negative_connected else negative_prompt,
                                    "positive": _conditioning_digest(positive) if positive is not None else ""},
                                   storyboard.tokens[k] if use_tokens else None, identity, faces)
            if project.keyframe_done(k, signature):
                image = torch.from_numpy(project.load_keyframe(k)).float().div(255)[None]
                latent = project.load_keyframe_latent(k, signature)
                if latent is None:  # a project from before latents were kept
                    latent = vae.encode(image)
            else:
                with torch.no_grad():
                    adapter = host.load_managed(renderer.patcher)
                    cond_tokens = adapter.project_tokens(storyboard.tokens[k:k + 1]) if use_tokens else None
                    id_tokens = None
                    if identity is not None:
                        id_tokens = adapter.identity_context(identity[None], faces)
                state = AdapterState(renderer.patcher, layers, cond_tokens, uncond_tokens, id_tokens,
                                     token_weight if use_tokens else 0.0,
                                     identity_weight if id_tokens is not None else 0.0, sigma_start, sigma_end)
                patched = patch_model(model, state)
                pos = positive if positive is not None else clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
                latent = host.sample_latent(patched, kseed, steps, cfg, sampler_name, scheduler, pos, negative,
                                            host.empty_latent(model, width, height, downscale=_downscale(vae)))
                image = vae.decode(latent)
                if image.ndim == 5:  # video VAEs return [B, T, H, W, C]
                    image = image.reshape(-1, *image.shape[-3:])
                image = image[:1].float().cpu()
                project.save_keyframe(k, _to_uint8(image[0]), signature,
                                      {"shot": spec.shot_id, "seed": str(kseed), "prompt": prompt}, latent=latent)
            images.append(image.float().cpu())
            latents.append(latent.float().cpu())
            send_keyframe(k, n, project.path(project.keyframe_file(k)), spec)
            preview = Image.fromarray(_to_uint8(images[-1][0]))
            progress(k + 1, n, preview=preview)
        return io.NodeOutput(torch.cat(images), {"samples": torch.cat(latents)},
                             ui=ui.PreviewText(f"{n} keyframes in {project.root}" + (
                                 f"\n{len(stale)} files of keyframes the storyboard no longer has moved to stale/"
                                 if stale else "")))
