"""MovieDreamerToyCinemaLoader: the node that hands out the shipped toy cinema decoder (``toycinema_models.py``
builds it in the host's own classes; ``moviedreamer_core/toycinema`` is the world it was trained on)."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io, ui

from . import wire_types
from .toycinema_models import UNET_FILE, WEIGHTS_DIR, load_toy_unet, pixel_vae, text_context, weights_path


class MovieDreamerToyCinemaLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerToyCinemaLoader",
            display_name="Load Toy Cinema Model (MovieDreamer)",
            category=wire_types.CATEGORY + "/toy cinema",
            description="The toy cinema's decoder: a small pixel-space diffusion UNet trained with the pack's own "
            "trainers on a procedural cartoon world (32x32 keyframes, CPU-friendly). Use it with the renderer "
            "toycinema_renderer and the planner toycinema_planner, the text encoder all-MiniLM-L6-v2 (built-in) and "
            "the face embedder toycinema in ScriptEncode. Its text condition is fixed (empty): connect positive and "
            "negative to the render node.",
            inputs=[],
            outputs=[io.Model.Output("model", display_name="MODEL", tooltip="The toy diffusion UNet (pixel space)."),
                     io.Vae.Output("vae", display_name="VAE", tooltip="The host's pixel-space VAE (pixels are the latents)."),
                     io.Conditioning.Output("positive", display_name="positive", tooltip="The toy world's fixed text condition."),
                     io.Conditioning.Output("negative", display_name="negative", tooltip="The same condition (the "
                                            "renderer's tokens and identities make the difference under guidance)."),
                     io.Image.Output("characters", display_name="characters",
                                     tooltip="Reference portraits of the toy world's six characters (64x64), in the "
                                     "order Ava, Bo, Cy, Dee, Eli, Fen: connect to ScriptEncode's images and write "
                                     "references: [0] for Ava, [1] for Bo, ...")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        path = weights_path(UNET_FILE)
        model = load_toy_unet(path)
        cond = [[text_context(), {}]]
        n = sum(p.numel() for p in model.model.diffusion_model.parameters())
        from ..moviedreamer_core.toycinema.film_script import world_references

        characters = torch.from_numpy(world_references()).float().div(255)
        return io.NodeOutput(model, pixel_vae(), cond, [[text_context(), {}]], characters,
                             ui=ui.PreviewText(f"{UNET_FILE}: {n / 1e6:.2f} M parameters, 32x32 pixel space"))

    @classmethod
    def fingerprint_inputs(cls):
        path = os.path.join(WEIGHTS_DIR, UNET_FILE)
        return os.path.getmtime(path) if os.path.isfile(path) else 0.0
