"""MovieDreamerGather: the master's last step of a distributed movie (ComfyUI-Distributed).

Every participant (the master when it renders, and each worker) makes its share of the keyframes and shots
(``moviedreamer_core/distribution``) and hands the results to ComfyUI-Distributed's collector as ShotAnimate's
``results``. On the master, this node reads what the collector gathered: files sent by participants that do not
share the master's output folder are written into the project folder, files in a shared folder are checked by
their hash, and every entry joins the manifest. Then it moves aside what the script no longer has and assembles
the movie from the shots, as ShotAnimate does on one instance. Anything the script needs that did not arrive is
named with the participant that was to make it; queuing again makes only that.

Without ComfyUI-Distributed (ShotAnimate's ``results`` connected straight here) it assembles the movie ShotAnimate
just made, so one workflow serves both.
"""

from __future__ import annotations

import numpy as np
import torch

from comfy_api.latest import io, ui

from ..moviedreamer_core.animate.movie import assemble_movie
from ..moviedreamer_core.distribution import payload as payloads
from ..moviedreamer_core.distribution.results import (SINGLE, check_payloads, expected_of, missing_work, run_fps,
                                                      write_checked)
from ..moviedreamer_core.distribution.split import outlines_of_script
from ..moviedreamer_core.project import KeyframeSet
from ..moviedreamer_core.script import script_hash
from . import host, wire_types
from ..moviedreamer_core.distribution.participation import parse_participation
from .choices import validated_widgets_only
from .distributed_inputs import check as check_distributed, distributed_input


@validated_widgets_only
class MovieDreamerGather(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerGather",
            display_name="Gather Movie (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Distributed movies (ComfyUI-Distributed): takes the keyframes and shots every participant "
            "made, from a DistributedCollector's audio output, into the master's project folder, checks that the "
            "script's every shot arrived (naming what is missing and who was to make it), and assembles the movie. "
            "Connected straight to ShotAnimate's results (no collector) it assembles the movie ShotAnimate made.",
            is_output_node=True,
            inputs=[
                io.Audio.Input("results", tooltip="The DistributedCollector's audio output (its audio input is "
                               "ShotAnimate's results), or ShotAnimate's results on one instance."),
                wire_types.Script.Input("script", tooltip="The script from ScriptEncode (the same one ShotAnimate got)."),
                io.String.Input("project_name", default="",
                                tooltip="Movie project folder under output/moviedreamer/ (empty = the script's title); "
                                "the same as ShotAnimate's."),
                distributed_input(),
            ],
            outputs=[
                wire_types.Movie.Output("movie", display_name="movie", tooltip="The movie project (folder, files)."),
                io.String.Output("movie_file", display_name="movie_file", tooltip="Path of the assembled movie (.mp4)."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="The first small frame of every shot (at most 64, spread over the movie)."),
                wire_types.Keyframes.Output("keyframe_set", display_name="keyframe_set",
                                            tooltip="Every keyframe as a file in the master's project folder (for another "
                                            "ShotAnimate's keyframe_set)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_distributed(kwargs)

    @classmethod
    def fingerprint_inputs(cls, project_name="", **kwargs):
        """The project's keyframes, shots and movie on disk: a deleted movie is assembled again rather than reported
        from the host's cache (``host.project_state``)."""
        return host.project_state(project_name, listed=("keyframes", "shots"), movie=True)

    @classmethod
    def execute(cls, results, script, project_name="", distributed=None) -> io.NodeOutput:
        who = parse_participation(distributed)
        if who is not None and not who.is_master:
            raise ValueError("Gather Movie (MovieDreamer) runs on the master only (put it after the DistributedCollector)")
        waveform = results.get("waveform") if isinstance(results, dict) else None
        if waveform is None:
            raise ValueError("results: expected the AUDIO of a DistributedCollector or of ShotAnimate's results")
        data = payloads.from_waveform(waveform.detach().float().cpu().numpy())
        found = payloads.decode_all(data)
        if not found:
            raise ValueError("results: no MovieDreamer results in this audio (connect ShotAnimate's results to the "
                             "collector's audio input, and the collector's audio output here)")
        name = project_name.strip() or script.title
        expected = expected_of(name, script_hash(script), outlines_of_script(script), who)
        job = who.job if who is not None else None
        accepted, notes = check_payloads(found, job, expected)  # refuses before the project folder is opened or written
        project = host.open_project(name)
        with project.compacting():  # folds the participants' journals into manifest.json, also on failure
            return cls._gather(project, found, script, who, accepted, notes)

    @classmethod
    def _gather(cls, project, found, script, who, accepted, notes) -> io.NodeOutput:
        single = who is None and all(p.header.get("participant") == SINGLE for p in found)
        got = write_checked(project, accepted, notes)
        if who is not None:
            missing = missing_work(outlines_of_script(script), who, got)
            if missing:
                raise RuntimeError("the distributed run is incomplete:\n" + "\n".join(missing + got.problems)
                                   + "\nQueue again: finished keyframes and shots are kept, only the rest is made.")
        fps = float(run_fps(accepted)) or 12.0  # the master's own (check_payloads holds every participant to it)
        files = []
        for i, shot in enumerate(script.shots):
            entry = project.manifest["shots"].get(str(i))
            if not entry or entry.get("status") != "done" or (not single and i not in got.shots):
                raise RuntimeError(f"shot {shot.shot_id} ({i + 1} of {len(script.shots)}) is not made: run ShotAnimate "
                                   "(or queue the distributed run again)")
            files.append(entry["file"])
        stale = project.retire_keyframes(script.n_keyframes)
        stale += project.retire_shots({i: f for i, f in enumerate(files)})
        preview = []
        for i, rel in enumerate(files):
            kept = project.shot_sidecar(i, project.manifest["shots"][str(i)]["signature"])
            if kept and kept["preview"]:
                preview.append(kept["preview"][0])
        backend = project.manifest["shots"][str(0)].get("backend", "")
        if len(preview) > 64:
            preview = [preview[round(i * (len(preview) - 1) / 63)] for i in range(64)]
        result = assemble_movie(project, files, fps, backend, preview, sorted(got.shots), stale)
        first = project.load_keyframe(0)
        height, width = (first.shape[:2] if first is not None else (8, 8))
        keyframe_set = KeyframeSet(project.root, script.n_keyframes, int(width), int(height),
                                   sha256=KeyframeSet.recorded_sha256(project, script.n_keyframes))
        image = torch.from_numpy(np.stack(preview)).float().div(255) if preview else torch.zeros(1, 8, 8, 3)
        lines = [f"{result.frames} frames ({result.frames / fps:.1f} s) in {len(files)} shots: {result.movie_file}"]
        for name, count in got.by_participant.items():
            if name != SINGLE:
                seconds = ", ".join(f"{k} {v:.1f} s" for k, v in (count.get("seconds") or {}).items())
                lines.append(f"{name}: {count['keyframes']} keyframes, {count['shots']} shots" + (f" ({seconds})" if seconds else ""))
        if got.written:
            lines.append(f"{len(got.written)} files received from participants that do not share this folder")
        lines += got.problems
        return io.NodeOutput(result, result.movie_file, image, keyframe_set, ui=ui.PreviewText("\n".join(lines)))
