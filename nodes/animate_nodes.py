"""ShotAnimate: keyframes to a movie on disk, shot by shot, with resume (MovieDreamer section 3.5).

Backends: ``animatic`` (each keyframe held for its shot's duration with a slow camera move and the script's
transitions: the cheap whole-movie preview that needs no video model) and the image-to-video models of
``i2v_backends`` (Wan, SVD, LTX-Video), chosen by ``auto`` from the connected MODEL. All run in the same ``make_movie``
loop: streamed to disk shot by shot, resumable.
"""

from __future__ import annotations

import numpy as np
import torch

from comfy_api.latest import io, ui

from ..moviedreamer_core.animate import animatic_backend, make_movie
from . import host, wire_types
from .choices import check_inputs, validated_widgets_only
from .keyframe_inputs import keyframe_source
from ..moviedreamer_core.distribution.participation import parse_participation
from .distributed_inputs import check as check_distributed, distributed_input, lazy_inputs_wanted, master_renders_input
from ..moviedreamer_core.animate.movie import blank_preview_frame
from ..moviedreamer_core.distribution import payload as payloads
from ..moviedreamer_core.distribution.results import share_payload
from ..moviedreamer_core.script import script_hash
from ..moviedreamer_core.distribution.shared_folder import shares_master_folder
from ..moviedreamer_core.distribution.split import Share, outlines_of_script, share_of
from .i2v_backends import LANDS_ON_NEXT, make_backend
from .model_fingerprints import fingerprint

BACKENDS = ["auto", "animatic"]
#: The inputs only a video model needs: lazy, so a participant that makes no shot never evaluates them.
VIDEO_MODEL_INPUTS = ("model", "vae", "clip_vision", "positive", "negative")


@validated_widgets_only
class ShotAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShotAnimate",
            display_name="Shot Animate (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Turns the keyframes into the movie: one video file per shot (duration from the script), "
            "written as soon as the shot is done, then the assembled movie. Re-running finishes an interrupted "
            "movie and re-makes only shots whose inputs changed. Backend 'animatic': each keyframe held with a "
            "slow camera move chosen from the shot's camera, and the script's transitions.",
            is_output_node=True,
            inputs=[
                io.Image.Input("keyframes", optional=True,
                               tooltip="All keyframes in order (from IdentityDiffusionRender), in one IMAGE batch. For "
                               "long movies connect keyframe_set instead."),
                wire_types.Script.Input("script", tooltip="The script from ScriptEncode: shot durations, cameras, transitions."),
                io.Combo.Input("backend", options=BACKENDS, default=BACKENDS[0],
                               tooltip="auto: the connected image-to-video MODEL (Wan, SVD, LTX-Video), or the animatic when no model is "
                               "connected. animatic: keyframes held with camera moves and transitions (fast, no video model)."),
                io.Float.Input("fps", default=12.0, min=1.0, max=60.0, step=1.0, tooltip="Frames per second of the movie."),
                io.Int.Input("frames_per_clip", default=25, min=2, max=1024,
                             tooltip="Native clip length of the video model; longer shots are chained clip by clip "
                             "from the last frame (the animatic makes each shot in one piece)."),
                io.String.Input("project_name", default="",
                                tooltip="Movie project folder under output/moviedreamer/ (empty = the script's title). "
                                "Finished shots there are reused on a rerun."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Base seed of the video model; every clip derives its own (ignored by the animatic)."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps per clip (video models)."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, tooltip="Guidance scale (video models)."),
                io.Combo.Input("sampler_name", options=host.sampler_names(), default="euler",
                               tooltip="The host's sampler (video models)."),
                io.Combo.Input("scheduler", options=host.scheduler_names(), default="simple",
                               tooltip="The host's noise schedule (video models)."),
                io.Float.Input("min_cfg", default=0.0, min=0.0, max=100.0, step=0.1, optional=True,
                               tooltip="SVD only: guidance rising linearly over each clip's frames from min_cfg to cfg "
                               "(the host's VideoLinearCFGGuidance; SVD workflows use 1.0). 0 = constant cfg."),
                io.Model.Input("model", optional=True, lazy=True,
                               tooltip="An image-to-video model (Wan 2.1/2.2 i2v, SVD, or LTX-Video). Not connected: the "
                               "animatic. With Wan, a shot whose next shot has the 'continuous' transition ends on that "
                               "shot's keyframe (first-last-frame)."),
                io.Vae.Input("vae", optional=True, lazy=True, tooltip="The video model's VAE."),
                io.ClipVision.Input("clip_vision", optional=True, lazy=True,
                                    tooltip="CLIP Vision for the keyframe's identity anchor, kept fixed across a long "
                                    "shot's chained clips (required by SVD; used by Wan 2.1 i2v)."),
                io.Conditioning.Input("positive", optional=True, lazy=True, tooltip="The video model's text conditioning (Wan, LTX-Video)."),
                io.Conditioning.Input("negative", optional=True, lazy=True,
                                      tooltip="The video model's negative conditioning (Wan, LTX-Video)."),
                wire_types.Keyframes.Input("keyframe_set", optional=True,
                                           tooltip="IdentityDiffusionRender's keyframe_set: the keyframes are read from the "
                                           "project folder shot by shot, so memory does not grow with the movie. Used "
                                           "instead of keyframes when connected."),
                master_renders_input(),
                distributed_input(),
            ],
            outputs=[
                wire_types.Movie.Output("movie", display_name="movie", tooltip="The movie project (folder, files)."),
                io.String.Output("movie_file", display_name="movie_file", tooltip="Path of the assembled movie (.mp4)."),
                io.Image.Output("preview", display_name="preview", tooltip="About one small frame per second of the movie."),
                io.Audio.Output("results", display_name="results",
                                tooltip="This participant's keyframes and shots as data, for ComfyUI-Distributed: connect "
                                "it to a DistributedCollector's audio input (and preview to its images), then the "
                                "collector's audio to Gather Movie (MovieDreamer) on the master."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        checked = check_inputs(cls, kwargs)
        return checked if checked is not True else check_distributed(kwargs)

    @classmethod
    def check_lazy_status(cls, script=None, distributed=None, **kwargs) -> list[str]:
        """Which of the video model's inputs (``VIDEO_MODEL_INPUTS``, lazy) the host should evaluate: every connected
        one, except where no shot is made: a distributed master that only orchestrates (``master_renders`` off) or a
        participant whose share is empty never needs them, so their loaders never run there (a Wan 14B model and its
        T5 text encoder are tens of GB the master would otherwise load for nothing)."""
        return lazy_inputs_wanted(VIDEO_MODEL_INPUTS, kwargs, distributed if script is not None else None,
                                  lambda who: bool(share_of(outlines_of_script(script), who).shots))

    @classmethod
    def fingerprint_inputs(cls, project_name="", **kwargs):
        """The project's shots and movie on disk: a server that kept this node's output makes a deleted shot or movie
        again instead of reporting the old file (``host.project_state``)."""
        return host.project_state(project_name, listed=("shots",), movie=True)

    @classmethod
    @host.pack_threads
    def execute(cls, script, backend, fps, frames_per_clip, keyframes=None, project_name="", seed=0, steps=20, cfg=5.0,
                sampler_name="euler", scheduler="simple", min_cfg=0.0, model=None, vae=None, clip_vision=None,
                positive=None, negative=None, keyframe_set=None, master_renders=True, distributed=None) -> io.NodeOutput:
        import time

        started = time.perf_counter()
        who = parse_participation(distributed)
        source = keyframe_source(keyframes, keyframe_set, script.n_keyframes)
        width, height = source.width, source.height
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choices: {', '.join(BACKENDS)})")
        size = (width - width % 2, height - height % 2)
        params = {}
        if backend == "auto" and model is not None:
            settings = dict(steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, seed=seed, size=size)
            backend, frames_fn = make_backend(model, vae, positive, negative, clip_vision, fps=fps, min_cfg=min_cfg,
                                              **settings)
            params = {k: v for k, v in settings.items() if k != "size"}
            if min_cfg:
                params["min_cfg"] = min_cfg
            # the video model, its VAE, its conditioning and CLIP Vision by their weights and contents (once)
            params["models"] = {name: fingerprint(value) if value is not None else None for name, value in (
                ("model", model), ("vae", vae), ("positive", positive), ("negative", negative),
                ("clip_vision", clip_vision))}
        else:
            backend, frames_fn = "animatic", animatic_backend(fps, size)
        share = share_of(outlines_of_script(script), who) if who is not None else None
        progress = host.Progress(len(share.shots) if share is not None else len(script.shots))
        project = host.open_project(project_name.strip() or script.title, who.writer if who is not None else None)

        with project.compacting():  # the manifest's journal into manifest.json, also when cancelled
            result = make_movie(project, script, source.read, fps=fps, frames_per_clip=frames_per_clip, size=size,
                                backend=frames_fn, backend_name=backend, backend_params=params, progress=progress,
                                check_interrupt=host.check_interrupt, lands_on_next=backend in LANDS_ON_NEXT,
                                only_shots=share.shots if share is not None else None)
        if result.preview:
            preview = torch.from_numpy(np.stack(result.preview)).float().div(255)
        else:  # never zero rows (a collector waits for a participant that sends none); the size every share has
            preview = torch.from_numpy(blank_preview_frame(size)[None]).float()
        # one instance: the gathering step reads the manifest itself, so the payload names nobody's files
        send = who is not None and not who.is_master and not shares_master_folder(host.output_directory(), who.job)
        data = payloads.encode(share_payload(project, who, share if share is not None else Share((), ()), send_files=send,
                                             seconds={"animate": round(time.perf_counter() - started, 3)}, fps=fps,
                                             project_name=project_name.strip() or script.title,
                                             script_hash=script_hash(script)))
        results = {"waveform": torch.from_numpy(payloads.to_waveform(data)), "sample_rate": payloads.SAMPLE_RATE}
        if share is not None:
            text = (f"distributed ({who.me}, {len(who.participants)} participants): {len(result.shot_files)} shots of "
                    f"{len(script.shots)} made here, {len(result.rendered)} this run; "
                    + ("files sent to the master" if send else "files kept in the master's project folder"
                       if who.is_master else "files left in the shared project folder"))
            return io.NodeOutput(result, "", preview, results, ui=ui.PreviewText(text))
        text = (f"{result.frames} frames ({result.frames / fps:.1f} s) in {len(result.shot_files)} shots, "
                f"{len(result.rendered)} made this run: {result.movie_file}")
        if result.stale:
            text += f"\n{len(result.stale)} files of shots the script no longer has moved to {project.root}/stale/"
        text += project.removed_temp_files_note() + project.waited_note()
        return io.NodeOutput(result, result.movie_file, preview, results, ui=ui.PreviewText(text))
