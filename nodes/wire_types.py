"""The pack's wire types. One definition each, so every node links the same type object.

``io.Custom(name)`` carries any Python object; the host type-checks links by name at prompt validation.
"""

from comfy_api.latest import io

#: A parsed, validated movie script (``moviedreamer_core.script.Script``).
Script = io.Custom("MD_SCRIPT")
#: The script made numeric (``moviedreamer_core.embeds.ScriptEmbeds``).
ScriptEmbeds = io.Custom("MD_SCRIPT_EMBEDS")
#: The autoregressive keyframe planner under the host's model management.
Planner = io.Custom("MD_PLANNER")
#: Planned visual tokens for every keyframe.
Storyboard = io.Custom("MD_STORYBOARD")
#: The identity decoder adapter.
Renderer = io.Custom("MD_RENDERER")
#: A movie project folder.
Movie = io.Custom("MD_MOVIE")
#: Every keyframe of a movie as a file in its project folder (``moviedreamer_core.project.KeyframeSet``).
Keyframes = io.Custom("MD_KEYFRAMES")

#: Category of every node in the pack ("Add Node" menu).
CATEGORY = "MovieDreamer"
