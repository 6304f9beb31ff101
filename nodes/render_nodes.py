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

from ..moviedreamer_core.file_kinds import RENDERER
from ..moviedreamer_core.project import KeyframeSet
from ..moviedreamer_core.renderer import RendererAdapter, load_renderer
from ..moviedreamer_core.renderer.faceid import FACE_STATES_SOURCE
from ..moviedreamer_core.spaces import TokenSpace, require_same_space, require_token_space
from ..moviedreamer_core.storyboard import Storyboard, derive_seed
from . import host, wire_types
from .choices import check_inputs, reported_under, validated_widgets_only
from ..moviedreamer_core.distribution.participation import parse_participation
from .distributed_inputs import check as check_distributed, distributed_input, lazy_inputs_wanted, master_renders_input
from ..moviedreamer_core.distribution.split import share_of
from .model_fingerprints import fingerprint
from ..moviedreamer_core.renderer_training_ranges import CHOICES
from .storyboard_events import send_keyframe, send_storyboard
from .keyframe_identity import KeyframeIdentity
from .attention_patch import AdapterState, discover_cross_attention, patch_model
from .unconditional_tokens import black_image_tokens, unconditional_features

def _identified(script_embeds, spec) -> list[int]:
    """The characters keyframe ``spec`` shows that have an identity (reference photos with a face): the ones the
    renderer is given, in the script's order."""
    return [c for c in spec.characters if script_embeds.characters[c].has_identity]


def _told(script_embeds, spec, places: int | None) -> list[int]:
    """The characters the renderer is given for keyframe ``spec``: the identified ones (``_identified``); with a
    renderer whose slots are screen places (``places``: their number, else ``None``), every figure on screen as soon as
    one is identified, a character without references standing at its place with a zero identity (given only the
    identified ones, it put "nobody here" at the others' places and drew an identified character twice: "Ava
    doubled"; an audit). More figures than places: the identified ones, as before (the renderer takes no more)."""
    on_screen = _identified(script_embeds, spec)
    if places is not None and on_screen and len(on_screen) < len(spec.characters) <= places:
        return list(spec.characters)
    return on_screen


#: IdentityDiffusionRender's inputs only sampling needs: lazy, so a distributed participant with no keyframe to make
#: never evaluates them (``check_lazy_status``).
SAMPLING_INPUTS = ("model", "vae", "clip", "positive", "negative")


def _share(script_embeds, who) -> set[int] | None:
    """The keyframe indices participant ``who`` of a distributed run makes (``None``: not distributed, all)."""
    if who is None:
        return None
    outlines = script_embeds.shot_outlines
    if sum(o.n_keyframes for o in outlines) != script_embeds.n_keyframes:
        raise ValueError("distributed: these script_embeds do not list their shots (made by an older "
                         "ScriptEncode?): re-run ScriptEncode")
    return set(share_of(outlines, who).keyframes)


def _model_prints(model, vae, renderer, clip, positive, negative, negative_prompt) -> dict:
    """Everything that determines a keyframe besides its own text, tokens, identities and seed: the models by their
    weights and patches (model_fingerprints), the conditionings by their contents. Computed once per run."""
    models = {"model": fingerprint(model), "vae": fingerprint(vae), "renderer": fingerprint((renderer.patcher, renderer.cfg))}
    clip_print = fingerprint(clip) if clip is not None and (positive is None or negative is None) else None
    if positive is not None:
        models["positive"] = fingerprint(positive)
    else:
        models["clip"] = clip_print
    if negative is not None:
        models["negative"] = fingerprint(negative)
    elif clip is not None:
        models["negative"], models["clip"] = negative_prompt, clip_print
    else:
        models["negative"] = "the positive zeroed"
    return models


def _blank_latent(model, vae, width: int, height: int) -> torch.Tensor:
    """A black row of the LATENT output: the model's latent layout, or, on a participant that never loaded the model
    (nothing to make, ``SAMPLING_INPUTS`` lazy), SD1.5/SDXL's (4 channels, 1/8 the size), the renderer's families."""
    if model is None:
        return torch.zeros([1, 4, height // 8, width // 8])
    return host.empty_latent(model, width, height, downscale=_downscale(vae)).float().cpu()


IPADAPTER_PREFIX = "ipadapter/"
TOKEN_SOURCES = list(CHOICES["token_source"].options)
#: What the render node's IMAGE and LATENT outputs hold: every keyframe, or a preview of at most
#: ``PREVIEW_KEYFRAMES`` spread over the movie (memory that does not grow with the movie; ShotAnimate then reads
#: the keyframes from the project folder through ``keyframe_set``).
IMAGES_OUTPUT = ["all", "preview"]
PREVIEW_KEYFRAMES = 16


def preview_indices(n: int, limit: int = PREVIEW_KEYFRAMES) -> list[int]:
    """At most ``limit`` keyframe indices spread evenly over ``n``, the first and the last included."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


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
    """MovieDreamer renderer files (not the planners beside them: ``file_kinds``), then IP-Adapter files."""
    return host.model_files(RENDERER) + [IPADAPTER_PREFIX + f for f in host.safetensors_files("ipadapter")]


@validated_widgets_only
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
        if renderer_name in host.model_files():
            return f'"{renderer_name}" is a MovieDreamer {host.model_file_kind(renderer_name)} file, not a renderer'
        folder = "models/ipadapter" if renderer_name.startswith(IPADAPTER_PREFIX) else "models/moviedreamer"
        return f'renderer file "{renderer_name.removeprefix(IPADAPTER_PREFIX)}" not found in {folder} (put the .safetensors file there)'

    @classmethod
    def fingerprint_inputs(cls, renderer_name=None, **kwargs):
        """The file on disk, not only its name: a renderer retrained under the same name is loaded again."""
        if renderer_name and renderer_name.startswith(IPADAPTER_PREFIX):
            return host.model_file_state("ipadapter", renderer_name[len(IPADAPTER_PREFIX):])
        return host.model_file_state(host.MODEL_FOLDER, renderer_name)

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
        ["place-aware queries"] if cfg.identity_positions else []) + (
        ["place-aware token queries"] if getattr(cfg, "token_positions", 0) else []) + (
        ["places read from the tokens"] if getattr(cfg, "identity_places", False) else [])
    return f" (characters bound to {cfg.identity_slots} places, left to right" + "".join(", " + e for e in extras) + ")"


@validated_widgets_only
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


def _unused_identities_note(renderer, identity_weight: float, script_embeds) -> str:
    """A line for the summary when the script's characters have reference photos that this render does not use: a
    renderer trained without an identity path (trained on pictures where no face was found, say) rendered such a
    script without a word (an audit)."""
    if identity_weight == 0 or renderer.cfg.identity is not None:
        return ""
    if not any(c.has_identity for c in script_embeds.characters):
        return ""
    return (f"\nthe renderer {renderer.name} has no identity path: the characters' reference photos do not steer these "
            "keyframes (its training found no faces, or it was trained without them)")


def _zeroed(conditioning) -> list:
    """The conditioning with every tensor zeroed, as the host's ConditioningZeroOut makes it: the negative when only
    a positive conditioning is connected (no negative, no CLIP to encode ``negative_prompt``)."""
    out = []
    for tensor, extra in conditioning:
        extra = dict(extra)
        if isinstance(extra.get("pooled_output"), torch.Tensor):
            extra["pooled_output"] = torch.zeros_like(extra["pooled_output"])
        out.append([torch.zeros_like(tensor), extra])
    return out


def _signature(parts: dict, *tensors: torch.Tensor | None) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for t in tensors:
        if t is not None:
            h.update(t.float().contiguous().numpy().tobytes())
        h.update(b"\x00")
    return h.hexdigest()


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


@validated_widgets_only
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
                io.Model.Input("model", lazy=True, tooltip="Your SD1.5 or SDXL model (from the checkpoint loader)."),
                io.Vae.Input("vae", lazy=True, tooltip="The VAE that decodes the keyframes."),
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
                io.Clip.Input("clip", optional=True, lazy=True,
                              tooltip="Text encoder for each keyframe's description (action, scene, characters, style). "
                              "Needed unless positive is connected."),
                io.Conditioning.Input("positive", optional=True, lazy=True,
                                      tooltip="Optional: one positive conditioning for all keyframes instead of their own texts."),
                io.Conditioning.Input("negative", optional=True, lazy=True,
                                      tooltip="Optional: the negative conditioning. With positive connected and neither "
                                      "negative nor clip, the negative is the positive zeroed (as ConditioningZeroOut)."),
                io.Combo.Input("images_output", options=IMAGES_OUTPUT, default=IMAGES_OUTPUT[0], optional=True,
                               tooltip=f"all: the keyframes output holds every keyframe (memory grows with the movie: "
                               f"1000 keyframes at 832x480 are 4.8 GB). preview: at most {PREVIEW_KEYFRAMES} keyframes "
                               "spread over the movie, for a look; connect keyframe_set to ShotAnimate, which then reads "
                               "the keyframes from the project folder shot by shot (long movies)."),
                master_renders_input(),
                distributed_input(),
            ],
            outputs=[
                io.Image.Output("images", display_name="keyframes",
                                tooltip="The rendered keyframes, in order (images_output preview: a few spread over the movie)."),
                io.Latent.Output("latent", display_name="latent", tooltip="Their latents (the same keyframes)."),
                wire_types.Keyframes.Output("keyframe_set", display_name="keyframe_set",
                                            tooltip="Every keyframe as a file in the movie project folder: connect it to "
                                            "ShotAnimate's keyframe_set, which reads them shot by shot."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        checked = check_inputs(cls, kwargs)
        start, end = kwargs.get("start_percent"), kwargs.get("end_percent")
        if checked is True and isinstance(start, (int, float)) and isinstance(end, (int, float)) and end < start:
            # else found after the planner has run
            checked = reported_under(kwargs, "end_percent", f"end_percent ({end}) is before start_percent ({start})")
        return checked if checked is not True else check_distributed(kwargs)

    @classmethod
    def check_lazy_status(cls, script_embeds=None, distributed=None, **kwargs) -> list[str]:
        """Which of the sampling inputs (``SAMPLING_INPUTS``, lazy) the host should evaluate: every connected one,
        except on a distributed participant with no keyframe to make (a master that only orchestrates, a worker
        whose share is empty), where the checkpoint loader and the text encoder would load an SDXL model for
        nothing; that participant only writes its empty share's outputs."""
        return lazy_inputs_wanted(SAMPLING_INPUTS, kwargs, distributed if script_embeds is not None else None,
                                  lambda who: bool(_share(script_embeds, who)))

    @classmethod
    def fingerprint_inputs(cls, project_name="", **kwargs):
        """The project's keyframes on disk: a server that kept this node's output makes a deleted or replaced keyframe
        again instead of serving the old one (``host.project_state``)."""
        return host.project_state(project_name, listed=("keyframes",))

    @classmethod
    @host.pack_threads
    def execute(cls, model, vae, renderer, storyboard, script_embeds, seed, steps, cfg, sampler_name, scheduler, width,
                height, token_weight, identity_weight, start_percent, end_percent, project_name="", negative_prompt="",
                clip=None, positive=None, negative=None, images_output=None, master_renders=True,
                distributed=None) -> io.NodeOutput:
        n = storyboard.n_keyframes
        who = parse_participation(distributed)
        share = _share(script_embeds, who)
        idle = share is not None and not share  # nothing to sample here: the lazy sampling inputs were not evaluated
        images_output = images_output or IMAGES_OUTPUT[0]
        if images_output not in IMAGES_OUTPUT:
            raise ValueError(f"images_output: {images_output!r} is not one of {', '.join(IMAGES_OUTPUT)}")
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
        limit = renderer.adapter.max_characters if use_identity else None
        if limit is not None:  # found here, not at the keyframe that has them after an hour of sampling
            for spec in script_embeds.keyframes:
                shown = len(_identified(script_embeds, spec))
                if shown > limit:
                    raise ValueError(f"shots[{spec.shot_index}] ({spec.shot_id}) puts {shown} characters on screen; the "
                                     f"renderer {renderer.name} draws at most {limit} in one keyframe (its identities "
                                     f"are bound to {limit} screen places). Split the shot or leave characters out of it.")
        needs_faces = use_identity and renderer.adapter.needs_face_states
        if needs_faces:
            _check_face_states(renderer, script_embeds)
        if positive is None and clip is None and not idle:
            raise ValueError("connect a CLIP text encoder (each keyframe's own text) or a positive conditioning")
        if end_percent < start_percent:
            raise ValueError(f"end_percent ({end_percent}) is before start_percent ({start_percent})")
        native = getattr(getattr(getattr(model, "model", None), "model_config", None), "native_size", None)
        if native and (int(width), int(height)) != (native, native):
            # the toy UNet at 768x768 took 266 s a keyframe at one step and drew nothing the toy world knows
            raise ValueError(f"the toy cinema's UNet draws {native}x{native} keyframes, not {width}x{height}: set width and "
                             f"height to {native} and scale the keyframes afterwards (the toy workflow's ImageScale)")
        layers = [] if idle else discover_cross_attention(model)
        dims = [l.inner_dim for l in layers]
        if not idle and (dims != list(renderer.cfg.layer_dims) or layers[0].context_dim != renderer.cfg.context_dim):
            raise ValueError(f"the renderer {renderer.name} was made for a UNet with {len(renderer.cfg.layer_dims)} "
                             f"cross-attention layers (context {renderer.cfg.context_dim}); this MODEL has {len(dims)} "
                             f"(context {layers[0].context_dim}). Use a renderer for this model family (SD1.5 / SDXL).")
        models = {} if idle else _model_prints(model, vae, renderer, clip, positive, negative, negative_prompt)

        project = host.open_project(project_name.strip() or script_embeds.title, who.writer if who is not None else None)
        with project.compacting():  # the manifest's journal into manifest.json, also when cancelled
            return cls._render(project, n, model, vae, renderer, storyboard, script_embeds, seed, steps, cfg, sampler_name,
                               scheduler, width, height, token_weight, identity_weight, start_percent, end_percent,
                               negative_prompt, clip, positive, negative, images_output, models, use_tokens, use_identity,
                               needs_faces, layers, share)

    @classmethod
    def _render(cls, project, n, model, vae, renderer, storyboard, script_embeds, seed, steps, cfg, sampler_name,
                scheduler, width, height, token_weight, identity_weight, start_percent, end_percent, negative_prompt,
                clip, positive, negative, images_output, models, use_tokens, use_identity, needs_faces,
                layers, share=None) -> io.NodeOutput:
        """``share``: the keyframe indices this participant of a distributed run makes (``None``: all of them).
        The others are left to the other participants: their rows of the outputs are black."""
        project.set_script(script_embeds.script_hash, script_embeds.title)
        # keyframes past this storyboard's end leave the folder and the manifest (the master's gathering step does
        # this in a distributed run)
        stale = project.retire_keyframes(n) if share is None else []
        todo = [k for k in range(n) if share is None or k in share]
        models_digest = _signature({"models": models})  # in each keyframe's entry: Gather Movie compares participants
        # ... and so it does the plan's makers where the plan is drawn (the token path): the planner (by its weights),
        # its few-shot choice and the encoders' spaces (the script is compared on its own). They are not in the
        # signature, so a keyframe reused with an older digest gets this run's (its tokens, in the signature, are these)
        plan_digest = _signature({"planner": storyboard.params.get("planner"),
                                  "few_shot": storyboard.params.get("few_shot_references"),
                                  "spaces": [script_embeds.text_space.describe(), script_embeds.identity_space.describe()]}
                                 ) if use_tokens else None
        uncond_tokens = sigma_start = sigma_end = None
        if todo:  # a participant with nothing to make has no model (its sampling inputs are lazy)
            sampling = model.get_model_object("model_sampling")
            sigma_start, sigma_end = sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)
            if negative is None:
                negative = clip.encode_from_tokens_scheduled(clip.tokenize(negative_prompt or "")) if clip is not None \
                    else _zeroed(positive)
            adapter = host.load_managed(renderer.patcher)
            if use_tokens:
                with torch.no_grad():
                    uncond_tokens = adapter.project_tokens(unconditional_features(renderer.cfg, storyboard))
        means = script_embeds.identity_means()
        places = (renderer.adapter.max_characters if use_identity and not needs_faces
                  and getattr(renderer.cfg, "identity_places", False) else None)
        progress = host.Progress(len(todo))
        send_storyboard(script_embeds)
        identity_check = KeyframeIdentity(script_embeds)  # each keyframe's faces against the references, once
        kept = set(range(n)) if images_output == "all" else set(preview_indices(n))
        images, latents = {}, {}
        size = None
        made = 0
        for done, k in enumerate(todo):
            spec = script_embeds.keyframes[k]
            on_screen = _told(script_embeds, spec, places)
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
                                    "range": [start_percent, end_percent], "token_path": use_tokens, "models": models},
                                   storyboard.tokens[k] if use_tokens else None, identity, faces)
            latent = None
            pixels = project.done_keyframe(k, signature)  # read once: checked against its hash and kept
            if pixels is not None:
                entry = project.keyframe_entry(k)
                if entry.get("plan") not in (None, plan_digest):  # written only when it differs (read-only projects)
                    info = {n: v for n, v in project.keyframe_info(entry).items() if n != "plan"}
                    project.record_keyframe(k, signature, {**info, **({"plan": plan_digest} if plan_digest else {})})
                if k in kept:
                    image = torch.from_numpy(pixels).float().div(255)[None]
                    latent = project.load_keyframe_latent(k, signature)
                    if latent is None:  # a project from before latents were kept, or the file is damaged
                        latent = vae.encode(image)
                        project.save_keyframe_latent(k, latent, signature)
            else:
                with torch.no_grad():
                    adapter = host.load_managed(renderer.patcher)
                    cond_tokens = adapter.project_tokens(storyboard.tokens[k:k + 1]) if use_tokens else None
                    id_tokens = None
                    if identity is not None:
                        id_tokens = adapter.identity_context(identity[None], faces,
                                                             tokens=storyboard.tokens[k:k + 1] if use_tokens else None)
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
                pixels = _to_uint8(image[0])
                project.save_keyframe(k, pixels, signature, {"shot": spec.shot_id, "seed": str(kseed), "prompt": prompt,
                                                             "models": models_digest,
                                                             **({"plan": plan_digest} if plan_digest else {})}, latent=latent)
                made += 1
            size = (int(pixels.shape[1]), int(pixels.shape[0]))
            if k in kept:
                images[k] = torch.from_numpy(pixels).float().div(255)[None]
                latents[k] = latent.float().cpu()
            report = identity_check.check(project, k, pixels)
            send_keyframe(k, n, project.path(project.keyframe_file(k)), spec, identity=identity_check.panel(report))
            progress(done + 1, len(todo), preview=Image.fromarray(pixels))
            del latent
        keyframe_set = KeyframeSet(project.root, n, *(size or (width, height)),
                                   sha256=tuple(h if share is None or k in share else "" for k, h in
                                                enumerate(KeyframeSet.recorded_sha256(project, n))))
        shown = "" if images_output == "all" else f" (keyframes output: {len(images)} of them, spread over the movie)"
        if share is not None:
            shown += f"; this participant's share: {len(todo)} of {n} keyframes (the others' rows are black)"
        order = sorted(kept)
        blank = next(iter(images.values()), torch.zeros(1, height, width, 3))
        blank_latent = next(iter(latents.values()), None)
        if blank_latent is None:
            blank_latent = _blank_latent(model, vae, width, height)
        image_rows = [images.get(k, torch.zeros_like(blank)) for k in order]
        latent_rows = [latents.get(k, torch.zeros_like(blank_latent)) for k in order]
        return io.NodeOutput(torch.cat(image_rows), {"samples": torch.cat(latent_rows)}, keyframe_set,
                             ui=ui.PreviewText(f"{n} keyframes in {project.root}{shown}, {made} made this run" + (
                                 f"\n{len(stale)} files of keyframes the storyboard no longer has moved to stale/"
                                 if stale else "") + project.removed_temp_files_note() + project.waited_note()
                                 + _unused_identities_note(renderer, identity_weight, script_embeds)
                                 + identity_check.note()))
