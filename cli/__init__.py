"""The pack's command-line programs, run from the pack's folder exactly as the README prints them:

    python cli/toycinema_demo.py     # a toy movie through the real ComfyUI executor
    python cli/toycinema_train.py    # retrain every toy cinema model
    python cli/train_renderer.py     # train a renderer on your checkpoint

They import ComfyUI as a library (``host_library.py``) and the pack as a package, so they live apart from the
graph nodes (``nodes/``) and the method (``moviedreamer_core/``). Running a file as a script puts its folder
first on ``sys.path``: no module here may carry a standard-library name (``tests/core/test_layout.py`` checks).
Programs that need no host run as modules of the method (``python -m moviedreamer_core.train`` and the like).
"""
