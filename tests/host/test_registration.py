"""The pack as the host sees it: registration, schemas, the models folder."""

from __future__ import annotations

import asyncio
import os

import pytest

from .harness import TEST_NODES_ENV, require_nodes

MAIN_NODES = {"ScriptEncode", "ARKeyframePlanner", "IdentityDiffusionRender", "ShotAnimate"}
TEST_NODE_PREFIX = "MovieDreamerTest"


def _extension_node_ids(host) -> list[str]:
    extension = asyncio.run(host.pack_module.comfy_entrypoint())
    return [cls.GET_SCHEMA().node_id for cls in asyncio.run(extension.get_node_list())]


def test_pack_registers_as_a_v3_extension(host):
    from comfy_api.latest import ComfyExtension

    pack = host.pack_module
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")  # it would make the host ignore comfy_entrypoint
    assert pack.WEB_DIRECTORY == "js"
    assert isinstance(asyncio.run(pack.comfy_entrypoint()), ComfyExtension)
    assert host.pack_node_ids, "the pack registered no nodes"
    # every node of the extension is registered: none was dropped for clashing with a built-in id
    assert sorted(_extension_node_ids(host)) == host.pack_node_ids


def test_a_node_module_that_fails_to_import_costs_only_its_own_nodes(host, caplog):
    """A broken module (here: one that does not exist) is reported in the log; the other nodes still load."""
    pack_nodes = host.pack_submodule("nodes")
    modules = dict(pack_nodes.NODE_MODULES, no_such_module=["MovieDreamerGhost"])
    classes, failed = pack_nodes.load_node_classes(modules)
    assert set(failed) == {"no_such_module"} and "ModuleNotFoundError" in failed["no_such_module"]
    assert "MovieDreamer: the nodes MovieDreamerGhost are not available" in caplog.text
    assert {c.define_schema().node_id for c in classes} == {
        name for names in pack_nodes.NODE_MODULES.values() for name in names}


def test_node_ids_follow_the_naming_rule(host):
    for node_id in host.pack_node_ids:
        assert node_id in MAIN_NODES or node_id.startswith("MovieDreamer"), node_id


def test_main_nodes_are_registered(host):
    require_nodes(host.nodes.NODE_CLASS_MAPPINGS, "ScriptEncode")
    assert "MovieDreamerScriptInfo" in host.pack_node_ids


def test_every_input_has_a_tooltip_and_every_output_a_name(host):
    for node_id in host.pack_node_ids:
        cls = host.nodes.NODE_CLASS_MAPPINGS[node_id]
        schema = cls.GET_SCHEMA()
        assert schema.category.startswith("MovieDreamer"), node_id
        assert schema.display_name and schema.description, node_id
        for inp in schema.inputs:
            assert inp.tooltip and inp.tooltip.strip(), f"{node_id}.{inp.id} has no tooltip"
        for out in schema.outputs:
            assert out.display_name, f"{node_id} output {out.id} has no display name"


def test_test_nodes_only_with_the_environment_flag(host, monkeypatch):
    assert os.environ.get(TEST_NODES_ENV) == "1"  # the harness sets it
    assert {"MovieDreamerTestTinyCLIP", "MovieDreamerTestTinyCLIPVision"} <= set(host.pack_node_ids)
    monkeypatch.delenv(TEST_NODES_ENV)
    user_ids = _extension_node_ids(host)
    assert user_ids and not [n for n in user_ids if n.startswith(TEST_NODE_PREFIX)]
    assert set(user_ids) == {n for n in host.pack_node_ids if not n.startswith(TEST_NODE_PREFIX)}


def test_test_loader_nodes_hand_out_tiny_models(host):
    import comfy.clip_vision
    import comfy.sd

    clip = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerTestTinyCLIP"].execute(seed=0).result[0]
    vision = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerTestTinyCLIPVision"].execute(seed=0).result[0]
    assert isinstance(clip, comfy.sd.CLIP) and isinstance(vision, comfy.clip_vision.ClipVisionModel)


def test_models_folder_is_registered_safetensors_only(host):
    fp = host.folder_paths
    paths, exts = fp.folder_names_and_paths["moviedreamer"]
    assert any(p.replace("\\", "/").endswith("models/moviedreamer") for p in paths)
    assert set(exts) == {".safetensors", ".sft"}


def test_models_folder_keeps_a_user_entry(host, tmp_path):
    fp = host.folder_paths
    hostmod = host.pack_submodule("nodes.host")
    saved = fp.folder_names_and_paths["moviedreamer"]
    try:
        # what extra_model_paths.yaml leaves behind: the user's folder with an empty extension set
        fp.folder_names_and_paths["moviedreamer"] = ([str(tmp_path)], set())
        (tmp_path / "story.safetensors").write_bytes(b"x")
        (tmp_path / "evil.ckpt").write_bytes(b"x")
        hostmod.register_model_folder()
        paths, exts = fp.folder_names_and_paths["moviedreamer"]
        assert paths[0] == str(tmp_path) and len(paths) == 2
        assert set(exts) == {".safetensors", ".sft"}
        fp.filename_list_cache.clear()
        files = fp.get_filename_list("moviedreamer")
        assert "story.safetensors" in files and "evil.ckpt" not in files
        hostmod.register_model_folder()  # idempotent: registering again adds nothing
        assert fp.folder_names_and_paths["moviedreamer"][0] == paths
    finally:
        fp.folder_names_and_paths["moviedreamer"] = saved
        fp.filename_list_cache.clear()


def test_run_reports_validation_and_execution_errors(host):
    """The harness itself: a refused input is named, an exception's message comes back, success is success."""
    refused = host.run({"1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": -5}},
                        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "x"}},
                        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}})
    assert not refused.valid and "seed" in refused.input_errors("1")
    with pytest.raises(AssertionError, match="seed"):
        refused.raise_for_error()

    # 16-channel latents into the tiny 4-channel VAE: valid types, torch raises while executing
    failed = host.run({"1": {"class_type": "EmptySD3LatentImage",
                             "inputs": {"width": 16, "height": 16, "batch_size": 1}},
                       "2": {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": 0}},
                       "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 1]}},
                       "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}})
    assert failed.valid and not failed.success and not failed.ok
    err = failed.execution_error
    assert err["node_id"] == "3" and err["exception_message"] and err["exception_type"]
    with pytest.raises(AssertionError, match="channels"):
        failed.raise_for_error()

    result, messages = host.run_graph({"1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
                                       "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "x"}},
                                       "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}})
    result.raise_for_error()
    assert "3" in result.outputs and messages[0][0] == "execution_start"
    assert messages[-1][0] == "execution_success"


def test_the_pack_imported_where_the_host_is_importable_but_not_running_starts_nothing(host, tmp_path):
    """A process with the host's folder on its path that never started the host (the dataset builder's spawned
    workers import their encoder factory's module through the pack's package; a user's script) imports the pack
    without importing the host's model management: without the host's command line that looks for a GPU, and on a
    machine without one the import failed ("Found no NVIDIA driver"), as the data builder's workers did whenever a
    host test had run first in the same pytest process."""
    import subprocess
    import sys

    from .harness import PACK_DIR

    code = (
        "import importlib.util, sys\n"
        f"sys.path[:0] = [{str(host.root)!r}]\n"
        f"spec = importlib.util.spec_from_file_location('md_pack_probe', {str(PACK_DIR / '__init__.py')!r},\n"
        f"    submodule_search_locations=[{str(PACK_DIR)!r}])\n"
        "pack = importlib.util.module_from_spec(spec)\n"
        "sys.modules['md_pack_probe'] = pack\n"
        "spec.loader.exec_module(pack)\n"
        "assert importlib.util.find_spec('comfy_api') is not None  # the host is importable\n"
        "print(sorted(m for m in sys.modules if m.startswith(('comfy', 'md_pack_probe.'))), hasattr(pack, 'comfy_entrypoint'))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[] False", proc.stdout


def test_a_model_folder_removed_while_the_server_runs_does_not_break_the_loaders(host, tmp_path):
    """Found while an audit ran beside the tests: a ``models/moviedreamer`` folder listed once and then removed made the
    host's cached listing raise (it reads each cached folder's time), and every planner and renderer loader failed at
    validation with "[Errno 2] No such file or directory". The listing is made afresh."""
    import shutil

    import folder_paths

    hostmod = host.pack_submodule("nodes.host")
    folder = tmp_path / "moviedreamer_removed"
    folder.mkdir()
    with host.model_folder(hostmod.MODEL_FOLDER, folder):
        hostmod.model_files()  # listed (and cached) with the folder there
        assert str(folder) in folder_paths.filename_list_cache[hostmod.MODEL_FOLDER][1]
        shutil.rmtree(folder)
        before = hostmod.model_files()
        assert isinstance(before, list)
        loader = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerPlannerLoader"]
        assert loader.validate_inputs(planner_name="toycinema_planner.safetensors") is True
