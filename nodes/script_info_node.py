"""MovieDreamerScriptInfo: look inside ``MD_SCRIPT_EMBEDS`` (keyframes, identity agreement) in the UI."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..moviedreamer_core.script_report import script_report
from . import wire_types
from .choices import check_inputs, validated_widgets_only


@validated_widgets_only
class MovieDreamerScriptInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MovieDreamerScriptInfo",
            display_name="Script Info (MovieDreamer)",
            category=wire_types.CATEGORY,
            description="Shows the encoded script: its keyframes, who is on screen, and how well each "
            "character's reference photos agree with each other and differ from the other characters.",
            is_output_node=True,
            inputs=[
                wire_types.ScriptEmbeds.Input("script_embeds", tooltip="The output of ScriptEncode."),
                io.Int.Input("max_keyframes", default=200, min=1, max=100000,
                             tooltip="How many keyframes to list (the summary and characters are always shown)."),
            ],
            outputs=[io.String.Output("report", display_name="report", tooltip="The same report as text.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return check_inputs(cls, kwargs)

    @classmethod
    def execute(cls, script_embeds, max_keyframes=200) -> io.NodeOutput:
        text = script_report(script_embeds, max_keyframes=max_keyframes)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
