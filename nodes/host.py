"""The one module that talks to the host's folders, model management, progress and interruption.

Every other module in ``nodes/`` asks this one for a folder, a progress bar or an interrupt check, so a
change in the host's API is mended here and nowhere else. Nothing in ``moviedreamer_core`` imports it:
core code receives plain callables (``progress``, ``check_interrupt``) and plain paths.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import folder_paths
import comfy.model_management as mm
import comfy.utils

from ..moviedreamer_core.file_kinds import file_kind, listed_for
from ..moviedreamer_core.files import TEMP_NAME
from ..moviedreamer_core.project import MovieProject

#: The models folder name our loaders list files from (``models/moviedreamer``).
MODEL_FOLDER = "moviedreamer"
#: Weights load from safetensors only: no pickle anywhere in the pack.
MODEL_EXTENSIONS = {".safetensors", ".sft"}
#: Where the identity-embedding cache lives, under the host's temp folder.
CACHE_SUBDIR = os.path.join("moviedreamer", "cache")


def register_ipadapter_folder() -> None:
    """Make sure ``models/ipadapter`` is known (ComfyUI_IPAdapter_plus registers it too; we merge)."""
    default = os.path.join(folder_paths.models_dir, "ipadapter")
    paths, exts = folder_paths.folder_names_and_paths.get("ipadapter", ([], set()))
    paths = list(paths)
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths["ipadapter"] = (paths, set(exts) or set(MODEL_EXTENSIONS))


def listed_files(folder: str) -> list[str]:
    """``folder_paths.get_filename_list``, also after one of the folder's paths was removed while the server runs: the
    host's cached listing then raises FileNotFoundError (it reads each cached path's time), and every loader of the
    pack failed at validation with "[Errno 2] No such file or directory: .../models/moviedreamer". The listing is
    made afresh instead.

    The temporary file of a write a kill cut short (``.tmp_xxxxxxxx.safetensors``, ``files.TEMP_NAME``: a renderer
    training killed while it saved) is left out: it is half a file, or a whole one that never got its name, and the
    loaders offered it as a model (an audit)."""
    try:
        names = folder_paths.get_filename_list(folder)
    except FileNotFoundError:
        folder_paths.filename_list_cache.pop(folder, None)
        names = folder_paths.get_filename_list(folder)
    return [n for n in names if not TEMP_NAME.match(os.path.basename(n))]


def safetensors_files(folder: str) -> list[str]:
    """Files of a models folder that we may load (safetensors only, whatever the folder allows)."""
    if folder not in folder_paths.folder_names_and_paths:
        return []
    return [f for f in listed_files(folder) if f.lower().endswith(tuple(MODEL_EXTENSIONS))]


def register_model_folder(extra_last: Optional[str] = None) -> None:
    """Register ``models/moviedreamer`` with the host, keeping any paths a user's extra_model_paths.yaml set.

    ``extra_model_paths.yaml`` is read before custom nodes load, so a user entry may already exist (with
    an empty extension set, which would match every file). We merge: user paths first, then the default
    folder, then ``extra_last`` (the pack's own toy models: listed, never written to), and set the extensions
    explicitly to safetensors.
    """
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    paths: list[str] = []
    if MODEL_FOLDER in folder_paths.folder_names_and_paths:
        paths = list(folder_paths.folder_names_and_paths[MODEL_FOLDER][0])
    if default not in paths:
        paths.append(default)
    if extra_last and extra_last not in paths:
        paths.append(extra_last)
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(MODEL_EXTENSIONS))
    register_ipadapter_folder()


def model_path(folder: str, file_name: str) -> str:
    """The full path of a model file a loader's combo offered (the host raises a clear error when it is gone)."""
    return folder_paths.get_full_path_or_raise(folder, file_name)


def model_file_state(folder: str, file_name: str) -> str:
    """What a loader's fingerprint on the host reads of its file (size and modification time, or why there is none):
    a file replaced under the same name (a renderer retrained with the same ``save_name``) is loaded again rather than
    served from the host's cache of the old one."""
    path = folder_paths.get_full_path(folder, file_name) if file_name else None
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    return f"{path}:{st.st_size}:{st.st_mtime_ns}" if st else f"{folder}/{file_name}: none"


def project_state(project_name: Optional[str], **parts):
    """A node's fingerprint on the host from its movie project's folder (``project.folder_state``: ``parts`` says which
    files count), so a kept output is not served when the files behind it changed on disk. A project named after the
    script's title (``project_name`` empty) cannot be found from the node's own inputs: NaN, so the node runs again
    every time (it resumes, making only what is missing)."""
    from ..moviedreamer_core.project import folder_state

    name = (project_name or "").strip()
    return folder_state(output_directory(), name, **parts) if name else float("nan")


def model_files(kind: Optional[str] = None) -> list[str]:
    """The planner/renderer files a loader can offer (relative names, as the host lists them); with ``kind``
    (``file_kinds.PLANNER`` / ``RENDERER``) only that kind's and files of no known kind (``file_kinds``)."""
    names = listed_files(MODEL_FOLDER)
    if kind is None:
        return names
    return [n for n in names if listed_for(kind, file_kind(folder_paths.get_full_path(MODEL_FOLDER, n) or ""))]


def model_file_kind(name: str) -> Optional[str]:
    """What a file of ``models/moviedreamer`` is (``file_kinds.file_kind``), by its listed name."""
    return file_kind(folder_paths.get_full_path(MODEL_FOLDER, name) or "")


def model_save_path(file_name: str, *, make: bool = True) -> str:
    """Where a new planner/renderer file is written: the first ``models/moviedreamer`` folder (a user's
    extra_model_paths entry comes first, made when ``make``); the name is kept inside it."""
    from ..moviedreamer_core.paths import resolve_inside

    folder = folder_paths.get_folder_paths(MODEL_FOLDER)[0]
    if make:
        os.makedirs(folder, exist_ok=True)
    return resolve_inside(folder, file_name)


def model_save_problem(file_name: str, kind: str) -> Optional[str]:
    """Why a ``kind`` file (``file_kinds.RENDERER``) may not be saved as ``file_name`` in ``models/moviedreamer``, or
    ``None``. Saving over a file of that kind (a training run again) is what the name is for; a training's
    save_name replaced a planner without a word, and one named like a file of another models folder (the toy
    cinema's planner) hid it from the loaders for every later prompt (an audit)."""
    path = model_save_path(file_name, make=False)
    listed = folder_paths.get_full_path(MODEL_FOLDER, file_name)
    if listed is not None and os.path.realpath(listed) != os.path.realpath(path):
        return (f'"{file_name}" is the name of {listed}: saved in {os.path.dirname(path)} (where new files go) it would '
                "hide that file from the loaders. Choose another save_name.")
    if os.path.lexists(path) and file_kind(path) != kind:
        found = file_kind(path)
        what = f"a MovieDreamer {found} file" if found else f"a file that is not a MovieDreamer {kind}"
        return f'"{file_name}" in {os.path.dirname(path)} is {what}: saving would replace it. Choose another save_name.'
    return None


def load_for_training(*patchers) -> None:
    """Load a frozen UNet and the modules trained against it onto the compute device together.

    The host builds and loads models inside ``torch.inference_mode``, so their weights are inference tensors,
    which autograd may not save for the backward pass through the frozen UNet (gradients must flow through it
    to the adapter). Such weights are replaced by ordinary copies with the same values, once; they stay frozen.
    Call inside ``torch.inference_mode(False)``."""
    import torch

    mm.load_models_gpu(list(patchers))
    for patcher in patchers:
        for module in patcher.model.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if param.is_inference():
                    setattr(module, name, torch.nn.Parameter(param.clone(), requires_grad=False))
            for name, buf in list(module.named_buffers(recurse=False)):
                if buf is not None and buf.is_inference():
                    module._buffers[name] = buf.clone()


def input_directory() -> str:
    return folder_paths.get_input_directory()


def output_directory() -> str:
    return folder_paths.get_output_directory()


def cache_directory() -> str:
    """Folder for small caches (identity embeddings), under the host's temp directory."""
    path = os.path.join(folder_paths.get_temp_directory(), CACHE_SUBDIR)
    os.makedirs(path, exist_ok=True)
    return path


def models_subfolder(name: str) -> list[str]:
    """All folders the host knows for a model family (e.g. ``insightface``), default location included."""
    paths = []
    if name in folder_paths.folder_names_and_paths:
        paths.extend(folder_paths.folder_names_and_paths[name][0])
    default = os.path.join(folder_paths.models_dir, name)
    if default not in paths:
        paths.append(default)
    return paths


def pack_threads(execute):
    """Decorator for a node's ``execute``: the node's work runs with the pack's CPU thread setting
    (``MOVIEDREAMER_THREADS``, see ``moviedreamer_core/threads.py``; unset: the host's own), restored afterwards."""
    from ..moviedreamer_core.threads import configured_threads, torch_threads

    @functools.wraps(execute)
    def run(*args, **kwargs):
        with torch_threads(configured_threads()):
            return execute(*args, **kwargs)

    return run


def check_interrupt() -> None:
    """Raise the host's interrupt exception if the user pressed Cancel.

    The websocket progress hook checks this too, but only when ``main.py`` installed it; long loops call
    this themselves so they stop in-process as well.
    """
    mm.throw_exception_if_processing_interrupted()


def wait_for_project(message: str) -> None:
    """Called every half second while another process holds the movie project a node opens
    (``moviedreamer_core.project_lock``, which logs ``message`` once): the user's Cancel stops the wait."""
    check_interrupt()


def open_project(name: str, writer: Optional[str] = None):
    """The movie project ``name`` in the host's output folder, opened for a node's run that writes it: held against
    other processes until the run's ``compacting()`` (or ``with``) ends, waiting (Cancel stops it) while another
    process holds it (``moviedreamer_core.project_lock``). ``writer`` names a participant of a distributed run."""
    return MovieProject(output_directory(), name, writer=writer, exclusive=True, wait=wait_for_project)


class Progress:
    """Progress reported to the host (websocket bar and previews) that also honours its interrupt.

    ``progress(done, total=None, preview=None)``: ``total`` may change as work is discovered; ``preview``
    is a PIL image, sent as a small JPEG.
    """

    def __init__(self, total: int = 1, preview_size: int = 512):
        self.total = max(int(total), 1)
        self.preview_size = preview_size
        self._bar = comfy.utils.ProgressBar(self.total)

    def __call__(self, done: int, total: Optional[int] = None, preview=None) -> None:
        check_interrupt()
        if total is not None:
            self.total = max(int(total), 1)
        payload = ("JPEG", preview, self.preview_size) if preview is not None else None
        self._bar.update_absolute(min(int(done), self.total), self.total, payload)


def executing_node() -> tuple[Optional[str], Optional[str]]:
    """``(prompt_id, node_id)`` of the node that is running now, or ``(None, None)`` outside execution."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None, None
    ctx = get_executing_context()
    return (ctx.prompt_id, ctx.node_id) if ctx is not None else (None, None)


def prompt_server():
    """The running ``server.PromptServer``, or ``None`` (the host used as a library, or the in-process harness)."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def add_prompt_step(step) -> bool:
    """Run ``step(json_data) -> json_data`` on every prompt queued on this server (the host's on-prompt handlers,
    which ComfyUI-Distributed's queue also goes through); ``False`` without a server."""
    instance = prompt_server()
    if instance is None:
        return False
    instance.add_on_prompt_handler(step)
    return True


def send_event(event: str, data: dict) -> bool:
    """Send a custom websocket message (``event``, ``data`` plus the running node's ``node``/``prompt_id``)
    to the client that queued the prompt, as the host's own progress messages go. Returns ``False`` when
    there is no server."""
    instance = prompt_server()
    if instance is None:
        return False
    prompt_id, node_id = executing_node()
    instance.send_sync(event, {"prompt_id": prompt_id, "node": node_id, **data}, instance.client_id)
    return True


def view_reference(path: str) -> Optional[dict]:
    """The ``{"filename", "subfolder", "type"}`` the front-end's ``/view`` route takes for a file in the output
    folder, or ``None`` for a file elsewhere."""
    root = os.path.realpath(output_directory())
    full = os.path.realpath(path)
    if os.path.commonpath([root, full]) != root:
        return None
    sub = os.path.relpath(os.path.dirname(full), root)
    return {"filename": os.path.basename(full), "subfolder": "" if sub == "." else sub.replace(os.sep, "/"), "type": "output"}


def managed(module):
    """Put a custom ``nn.Module`` (planner, renderer adapter) under the host's memory management.

    The host may offload it between uses like any of its own models; call ``load_managed`` before each use.
    """
    import comfy.model_patcher

    module = module.to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def load_managed(patcher):
    """Load a managed module onto the compute device (freeing others if needed) and return the module."""
    mm.load_models_gpu([patcher])
    return patcher.model


def sample_latent(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                  latent, denoise: float = 1.0, noise_mask=None):
    """The host's own sampling (``comfy.sample``), with the host's noise for ``seed`` and an interrupt check
    after every step (so Cancel stops a render between steps even without the websocket hook). ``noise_mask``
    is a LATENT's ``noise_mask`` (as KSampler passes it: 0 keeps the input latent there, 1 samples)."""
    import comfy.sample

    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                               denoise=denoise, noise_mask=noise_mask, callback=lambda *args: check_interrupt(),
                               disable_pbar=True, seed=seed)


def conditional_prediction(model, noisy, sigmas, conditioning, latent_image=None):
    """The host sampler's conditional prediction of the clean latents for ``noisy`` at ``sigmas``: what KSampler's
    path computes for a ``positive`` CONDITIONING, step by step through the host's own functions, so that
    training sees exactly what a render sees (and gradients flow: nothing here is under ``no_grad``).

    ``noisy`` is in the model's own latent scale (after ``process_latent_in``), ``sigmas`` ``[B]``;
    ``conditioning`` a CONDITIONING (``[[cross_attn [B, L, C], {"pooled_output": [B, P], ...}]]``, tensors with the
    batch's rows or one row for all). The host turns it into the model's inputs (``comfy.samplers.process_conds``:
    ``extra_conds``, i.e. for SDXL the ADM vector from the pooled text and the image size, which it reads from the
    latent's shape as in a render; ``latent_image`` is what a render passes, zeros by default) and runs
    ``comfy.samplers.calc_cond_batch`` with the MODEL's patches (``cond_or_uncond`` = conditional). ``model`` is a
    ModelPatcher whose weights are loaded (``load_for_training`` or ``load_managed``)."""
    import torch
    import comfy.sampler_helpers
    import comfy.samplers

    device = noisy.device
    if latent_image is None:
        latent_image = torch.zeros_like(noisy)
    conds = comfy.samplers.process_conds(model.model, noisy, {"positive": comfy.sampler_helpers.convert_cond(conditioning)},
                                         device, latent_image, None, None)["positive"]
    model.pre_run()  # as CFGGuider.outer_sample: the model knows its patcher (hooks, state) while it runs
    try:
        return comfy.samplers.calc_cond_batch(model.model, [conds], noisy, sigmas, model.model_options)[0]
    finally:
        model.cleanup()


def empty_latent(model, width: int, height: int, batch: int = 1, downscale: int = 8):
    """Zeros in the model's latent layout (as the host's EmptyLatentImage: channels from the model, size from
    the VAE's spatial compression, 8 for SD1.5/SDXL, 1 for pixel-space models)."""
    import torch

    channels = model.get_model_object("latent_format").latent_channels
    return torch.zeros([batch, channels, height // downscale, width // downscale], device=intermediate_device())


def sampler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.KSampler.SCHEDULERS)


def torch_device():
    return mm.get_torch_device()


def intermediate_device():
    return mm.intermediate_device()


def is_model_patcher(obj) -> bool:
    """Whether ``obj`` is the host's ``ModelPatcher`` (MODEL, and the patcher inside CLIP, VAE and CLIP Vision)."""
    import comfy.model_patcher

    return isinstance(obj, comfy.model_patcher.ModelPatcher)
