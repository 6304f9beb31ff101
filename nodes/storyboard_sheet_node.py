"""MovieDreamerStoryboardSheet: the rendered keyframes as one captioned picture, saved in the movie project.

A cheap overview of a whole movie before hours of image-to-video sampling (and the picture the toy cinema demo
writes beside its movie). The layout is ``moviedreamer_core.storyboard_sheet``; this node adds the project folder
and the preview.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from comfy_api.latest import io, ui

from ..moviedreamer_core.files import write_if_changed
from ..moviedreamer_core.storyboard_sheet import ReadOneByOne, SheetTooLarge, contact_sheet
from . import host, wire_types
from .choices import check_inputs, validated_widgets_only
from .keyframe_inputs import keyframe_source

SHEET_FILE = "storyboard.png"


@validated_widgets_only
class MovieDreamerStoryboardSheet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerStoryboardSheet",
            display_name="Storyboard Sheet (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Lays the keyframes out in a grid, each captioned with its shot and action, and saves the "
            "picture as storyboard.png in the movie project folder.",
            is_output_node=True,
            inputs=[
                io.Image.Input("keyframes", optional=True,
                               tooltip="The rendered keyframes, in order (IdentityDiffusionRender's keyframes with "
                               "images_output all). Long movies: connect keyframe_set instead."),
                wire_types.ScriptEmbeds.Input("script_embeds", tooltip="From ScriptEncode: the captions (shot id and action)."),
                io.Int.Input("columns", default=6, min=1, max=64, tooltip="Keyframes per row."),
                io.Int.Input("cell_width", default=160, min=16, max=2048, step=8,
                             tooltip="Width of each keyframe in the sheet, in pixels (small keyframes are enlarged)."),
                io.String.Input("project_name", default="",
                                tooltip="Movie project folder under output/moviedreamer/ (empty = the script's title)."),
                wire_types.Keyframes.Input("keyframe_set", optional=True,
                                           tooltip="IdentityDiffusionRender's or Gather Movie's keyframe_set: the keyframes "
                                           "are read from the project folder one at a time, so memory does not grow "
                                           "with the movie. Used instead of keyframes when connected."),
            ],
            outputs=[io.Image.Output("sheet", display_name="sheet", tooltip="The storyboard picture.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    def fingerprint_inputs(cls, project_name="", **kwargs):
        """The sheet on disk: a deleted ``storyboard.png`` is drawn again (``host.project_state``)."""
        return host.project_state(project_name, sized=(SHEET_FILE,))

    @classmethod
    def execute(cls, script_embeds, columns, cell_width, project_name="", keyframes=None, keyframe_set=None) -> io.NodeOutput:
        source = keyframe_source(keyframes, keyframe_set, script_embeds.n_keyframes)
        # the keyframes are read and the sheet written while no other process makes this project (project_lock)
        with host.open_project(project_name.strip() or script_embeds.title) as project:
            frames = ReadOneByOne(source.count, source.read)  # pasted one at a time: a long movie's never held together
            captions = [f"{k.shot_id}: {k.action}" for k in script_embeds.keyframes]
            try:  # a sheet too large for cell_width gets narrower cells (contact_sheet logs it)
                sheet = contact_sheet(frames, captions, columns=columns, cell=cell_width)
            except SheetTooLarge as e:
                raise ValueError(f"keyframes: {e}") from None
            path = project.path(SHEET_FILE)
            from io import BytesIO

            from PIL import Image

            buffer = BytesIO()
            Image.fromarray(sheet).save(buffer, format="PNG")
            write_if_changed(path, buffer.getvalue())  # the same sheet again: nothing written
            ref = host.view_reference(path)
            image = torch.from_numpy(np.ascontiguousarray(sheet)).float().div(255)[None]
            shown = ui.SavedImages([ui.SavedResult(ref["filename"], ref["subfolder"], io.FolderType.output)]) if ref else None
        return io.NodeOutput(image, ui=shown or ui.PreviewText(f"saved {os.path.basename(path)}"))
