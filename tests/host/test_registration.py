"""The pack as the host sees it: registration, schemas, the models folder."""

from __future__ import annotations

MAIN_NODES = {"ScriptEncode", "ARKeyframePlanner", "IdentityDiffusionRender", "ShotAnimate"}


def test_pack_registers_its_nodes(host):
    ids = set(host.pack_node_ids)
    assert "ScriptEncode" in ids and "MovieDreamerScriptInfo" in ids
    for node_id in ids:
        assert node_id in MAIN_NODES or node_id.startswith("MovieDreamer"), node_id


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
        files = fp.get_filename_list("moviedreamer")
        assert "story.safetensors" in files and "evil.ckpt" not in files
    finally:
        fp.folder_names_and_paths["moviedreamer"] = saved
        fp.filename_list_cache.clear()
