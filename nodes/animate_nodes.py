"""ShotAnimate: keyframes to a movie on disk, shot by shot, with resume (MovieDreamer section 3.5).

This release animates with the *animatic* backend (each keyframe held for its shot's duration with a slow
camera move and the script's transitions): the cheap whole-movie preview that needs no video model. The
image-to-video backends (SVD, Wan, LTX-Video through the host's own conditioning nodes) plug into the same
``make_movie`` loop; their inputs will be added as optional inputs, so saved workflows keep loading.
"""

from __future__ import annotations

import numpy as np
import torch

from comfy_api.latest import io, ui

from ..moviedreamer_core.animate import animatic_backend, make_movie
from ..moviedreamer_core.project import MovieProject
from . import host, types

BACKENDS = ["animatic"]


class ShotAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ShotAnimate",
            display_name="Shot Animate (MovieDreamer)",
            category=types.CATEGORY,
            description="Turns the keyframes into the movie: one video file per shot (duration from the script), "
            "written as soon as the shot is done, then the assembled movie. Re-running finishes an interrupted "
            "movie and re-makes only shots whose inputs changed. Backend 'animatic': each keyframe held with a "
            "slow camera move chosen from the shot's camera, and the script's transitions.",
            is_output_node=True,
            inputs=[
                io.Image.Input("keyframes", tooltip="All keyframes in order (from IdentityDiffusionRender)."),
                types.Script.Input("script", tooltip="The script from ScriptEncode: shot durations, cameras, transitions."),
                io.Combo.Input("backend", options=BACKENDS, default=BACKENDS[0],
                               tooltip="animatic: keyframes held with camera moves and transitions (fast, no video model)."),
                io.Float.Input("fps", default=12.0, min=1.0, max=60.0, step=1.0, tooltip="Frames per second of the movie."),
                io.Int.Input("frames_per_clip", default=25, min=2, max=1024,
                             tooltip="Native clip length of the video model; longer shots are chained clip by clip "
                             "from the last frame (the animatic makes each shot in one piece)."),
                io.String.Input("project_name", default="",
                                tooltip="Movie project folder under output/moviedreamer/ (empty = the script's title). "
                                "Finished shots there are reused on a rerun."),
            ],
            outputs=[
                types.Movie.Output("movie", display_name="movie", tooltip="The movie project (folder, files)."),
                io.String.Output("movie_file", display_name="movie_file", tooltip="Path of the assembled movie (.mp4)."),
                io.Image.Output("preview", display_name="preview", tooltip="About one small frame per second of the movie."),
            ],
        )

    @classmethod
    def execute(cls, keyframes, script, backend, fps, frames_per_clip, project_name="") -> io.NodeOutput:
        if keyframes.shape[0] != script.n_keyframes:
            raise ValueError(f"got {keyframes.shape[0]} keyframe images, but the script has {script.n_keyframes} keyframes")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choices: {', '.join(BACKENDS)})")
        height, width = int(keyframes.shape[1]), int(keyframes.shape[2])
        size = (width - width % 2, height - height % 2)
        project = MovieProject(host.output_directory(), project_name.strip() or script.title)
        progress = host.Progress(len(script.shots))

        def keyframe(i: int) -> np.ndarray:
            return (keyframes[i, :, :, :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

        result = make_movie(project, script, keyframe, fps=fps, frames_per_clip=frames_per_clip, size=size,
                            backend=animatic_backend(fps, size), backend_name=backend, progress=progress,
                            check_interrupt=host.check_interrupt)
        preview = torch.from_numpy(np.stack(result.preview)).float().div(255) if result.preview else torch.zeros(1, 8, 8, 3)
        text = (f"{result.frames} frames ({result.frames / fps:.1f} s) in {len(result.shot_files)} shots, "
                f"{len(result.rendered)} made this run: {result.movie_file}")
        return io.NodeOutput(result, result.movie_file, preview, ui=ui.PreviewText(text))
