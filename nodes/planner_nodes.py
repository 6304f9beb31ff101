"""MovieDreamerPlannerLoader and ARKeyframePlanner: the autoregressive keyframe planner in the graph.

The planner itself is ``moviedreamer_core.planner``; this module finds files, puts the learned planner under
the host's model management (so the host can offload it), and turns progress and cancel into host calls.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

from comfy_api.latest import io, ui

from ..moviedreamer_core.file_kinds import PLANNER
from ..moviedreamer_core.planner import ZeroShotPrior, generate_storyboard, load_planner
from ..moviedreamer_core.planner.inputs import cameras_planned_as
from ..moviedreamer_core.planner.scene_bank import FAR_COSINE, SCENE, empty_actions, far_scenes, unseen_scenes
from ..moviedreamer_core.spaces import SpaceMismatchError
from ..moviedreamer_core.storyboard import storyboard_report
from . import host, wire_types
from .choices import check_inputs, validated_widgets_only
from .model_fingerprints import fingerprint
from .storyboard_events import send_storyboard

ZERO_SHOT = "(zero-shot prior: no planner file)"


@dataclass
class PlannerHandle:
    """``MD_PLANNER``: a learned planner under a ModelPatcher, or the training-free zero-shot prior."""

    name: str
    patcher: Any = None  # comfy ModelPatcher around a KeyframePlanner
    prior: Optional[ZeroShotPrior] = None

    def module(self):
        return self.prior if self.prior is not None else host.load_managed(self.patcher)


@validated_widgets_only
class MovieDreamerPlannerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerPlannerLoader",
            display_name="Load Keyframe Planner (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Loads a MovieDreamer keyframe planner from models/moviedreamer (safetensors), or selects the "
            "training-free zero-shot prior, which plans from the characters' reference photos and works with "
            "public IP-Adapter-family decoders today.",
            inputs=[
                io.Combo.Input(
                    "planner_name", options=[ZERO_SHOT] + host.model_files(PLANNER), default=ZERO_SHOT,
                    tooltip="A planner file in models/moviedreamer, or the zero-shot prior (needs a CLIP Vision model "
                    "and reference photos in ScriptEncode).",
                ),
            ],
            outputs=[wire_types.Planner.Output("planner", display_name="planner", tooltip="The keyframe planner.")],
        )

    @classmethod
    def validate_inputs(cls, planner_name=None, **kwargs):
        """Prompt-time check of the file choice (this host does not check V3 combo values itself)."""
        if planner_name is None or planner_name == ZERO_SHOT or planner_name in host.model_files(PLANNER):
            return True
        if planner_name in host.model_files():
            return f'"{planner_name}" is a MovieDreamer {host.model_file_kind(planner_name)} file, not a planner'
        return f'planner file "{planner_name}" not found in models/moviedreamer (put the .safetensors file there)'

    @classmethod
    def fingerprint_inputs(cls, planner_name=None, **kwargs):
        """The file on disk, not only its name: a planner retrained under the same name is loaded again."""
        return "zero-shot" if planner_name == ZERO_SHOT else host.model_file_state(host.MODEL_FOLDER, planner_name)

    @classmethod
    def execute(cls, planner_name) -> io.NodeOutput:
        if planner_name == ZERO_SHOT:
            return io.NodeOutput(PlannerHandle(name=ZeroShotPrior.name, prior=ZeroShotPrior()))
        path = host.model_path(host.MODEL_FOLDER, planner_name)
        model = load_planner(path)
        return io.NodeOutput(PlannerHandle(name=os.path.basename(planner_name), patcher=host.managed(model)))


@validated_widgets_only
class ARKeyframePlanner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ARKeyframePlanner",
            display_name="AR Keyframe Planner (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Plans the whole movie: predicts every keyframe's visual tokens from the script and all "
            "earlier keyframes (MovieDreamer section 3.3), with a bounded context so any story length costs the "
            "same per keyframe.",
            inputs=[
                wire_types.Planner.Input("planner", tooltip="From Load Keyframe Planner."),
                wire_types.ScriptEmbeds.Input("script_embeds", tooltip="From ScriptEncode."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Base seed; each keyframe derives its own seed from it, so the same seed "
                             "plans the same storyboard."),
                io.Float.Input("temperature", default=0.7, min=0.0, max=2.0, step=0.05,
                               tooltip="Sampling temperature of the token mixture. 0 = the most likely tokens "
                               "(deterministic); higher = more varied keyframes."),
                io.Float.Input("guidance", default=1.5, min=1.0, max=10.0, step=0.1,
                               tooltip="Classifier-free guidance on the script: above 1 keyframes follow the script "
                               "more closely (costs a second pass). Ignored by the zero-shot prior."),
                io.Int.Input("context_window", default=16, min=1, max=4096,
                             tooltip="Earlier keyframes the planner keeps in view (the script header always stays). "
                             "Between this and twice this many are visible; larger = longer memory, slower."),
                io.Boolean.Input("few_shot_references", default=True,
                                 tooltip="Give the planner each character's reference tokens (their photos encoded by "
                                 "CLIP Vision in ScriptEncode) as in-context examples. Needs the planner's token "
                                 "space to match the CLIP Vision model."),
            ],
            outputs=[wire_types.Storyboard.Output("storyboard", display_name="storyboard",
                                             tooltip="Planned visual tokens of every keyframe, with seeds and lineage.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    @host.pack_threads
    def execute(cls, planner, script_embeds, seed, temperature, guidance, context_window, few_shot_references=True) -> io.NodeOutput:
        progress = host.Progress(script_embeds.n_keyframes)
        model = planner.module()
        refs = None
        if not few_shot_references and planner.prior is None:  # the prior always plans from reference tokens
            refs = [None] * len(script_embeds.characters)
        try:
            board = generate_storyboard(
                model, script_embeds, seed=seed, temperature=temperature, guidance=guidance, window=context_window,
                reference_tokens=refs, progress=progress, planner_name=planner.name,
            )
        except SpaceMismatchError as e:
            hint = (" Turn off few_shot_references, or connect the CLIP Vision model the planner was trained with."
                    if "reference tokens" in str(e) else "")
            raise SpaceMismatchError(f"{e}.{hint}") from e
        # which planner made it, by its weights: the participants of a distributed run must plan with the same one
        # (IdentityDiffusionRender puts it in each keyframe's entry, Gather Movie compares them; a worker with another
        # planner file under the same name had its share drawn from another plan without a word: an audit)
        planner_print = fingerprint(planner.patcher) if planner.patcher is not None else planner.name
        board = dataclasses.replace(board, params={**board.params, "planner": planner_print,
                                                   "few_shot_references": bool(few_shot_references)})
        send_storyboard(script_embeds)
        text = (f"{board.n_keyframes} keyframes planned by {board.planner_name} in {board.token_space.describe()} "
                f"(seed {seed}, temperature {temperature}, guidance {guidance})")
        if getattr(getattr(model, "cfg", None), "fixed_style", False):
            text += ("\nplanned in the one style its training films had (the planner does not read the script's "
                     "style; the renderer's prompt does)")
        cfg = getattr(model, "cfg", None)
        if hasattr(cfg, "reads") and cfg.reads("camera"):
            mapped = cameras_planned_as((k.camera for k in script_embeds.keyframes), cfg.cameras)
            if mapped:
                text += ("\ncameras its training films never had, planned as the nearest it knows (the renderer's prompt "
                         "keeps the script's): " + ", ".join(f"{a} as {b}" for a, b in mapped.items()))
        if getattr(getattr(model, "cfg", None), "scene_bank", 0):
            scenes = script_embeds.keyframe_text[:, SCENE]
            unseen = unseen_scenes(scenes, model.scene_bank)
            text += (f"\n{unseen} of {scenes.shape[0]} keyframes have a scene sentence its training films never had: "
                     f"each planned close to the nearest of the {model.cfg.scene_bank} it knows (the renderer's prompt keeps the "
                     "script's)" if unseen else "")
            far = far_scenes(scenes, model.scene_bank)
            if far:
                shots = list(dict.fromkeys(script_embeds.keyframes[i].shot_id for i in far))
                text += (f"\nWARNING: the scene of shot{'s' if len(shots) > 1 else ''} {', '.join(shots[:10])}"
                         f"{' ...' if len(shots) > 10 else ''} is like no place its training films showed (cosine below "
                         f"{FAR_COSINE} to every scene it knows): drawn as the nearest place it knows, not as written")
        if getattr(cfg, "empty_bank", 0):
            actions = empty_actions(script_embeds.keyframe_text, [k.characters for k in script_embeds.keyframes])
            unseen = unseen_scenes(actions, model.empty_bank)
            text += (f"\n{unseen} of {len(actions)} keyframes with nobody on screen have an action its training films' empty "
                     "shots never had: each planned as the empty shot it knows nearest its action and scene (the renderer's "
                     "prompt keeps the script's)" if unseen else "")
        return io.NodeOutput(board, ui=ui.PreviewText(text))


@validated_widgets_only
class MovieDreamerStoryboardInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerStoryboardInfo",
            display_name="Storyboard Info (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Shows a planned storyboard: who planned it, its token space and seeds, and per keyframe how "
            "similar it is to the keyframe before (continuity within shots, change at cuts).",
            is_output_node=True,
            inputs=[
                wire_types.Storyboard.Input("storyboard", tooltip="From AR Keyframe Planner."),
                io.Int.Input("max_keyframes", default=200, min=1, max=100000, tooltip="How many keyframes to list."),
            ],
            outputs=[io.String.Output("report", display_name="report", tooltip="The same report as text.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    def execute(cls, storyboard, max_keyframes=200) -> io.NodeOutput:
        text = storyboard_report(storyboard, max_keyframes=max_keyframes)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
