"""MovieDreamer, the method in pure PyTorch (arXiv 2407.16655).

Nothing in this package imports the ComfyUI host: the host lives in ``nodes/``. A reader who wants to
understand the method starts here; ``moviedreamer_core.script`` holds the multimodal script,
``moviedreamer_core.identity`` the face-identity embedders, ``moviedreamer_core.embeds`` the numeric
form of a script that the planner and renderer consume.
"""

__version__ = "0.1.0"
