"""Long movies through the nodes' own path and the project folder's hygiene, on the real executor (issue 19):
keyframes handed to ShotAnimate as files (keyframe_set) instead of one IMAGE batch, the temporary files of an
interrupted run removed by the next, and ScriptEncode's script-file choices listed once per change of the input
folder rather than on every prompt."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .test_render import graph, previews, script


def _project(host, name: str) -> Path:
    return Path(host.folder_paths.get_output_directory()) / "moviedreamer" / name


def long_movie_graph(n: int, project: str) -> dict:
    """Render (preview IMAGE, keyframe_set) -> ShotAnimate reading the keyframes from the project folder; beside it
    the same keyframes as one IMAGE batch (images_output all) -> another ShotAnimate into another project."""
    g = graph(script(n, title_suffix=" long"), project=project)
    g["11"]["inputs"]["images_output"] = "preview"
    g["14"] = {"class_type": "IdentityDiffusionRender", "inputs": {**g["11"]["inputs"], "images_output": "all"}}
    animate = {"script": ["2", 0], "backend": "animatic", "fps": 4.0, "frames_per_clip": 25, "seed": 0, "steps": 2,
               "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple"}
    g["13"] = {"class_type": "ShotAnimate", "inputs": {**animate, "keyframe_set": ["11", 2], "project_name": project}}
    g["15"] = {"class_type": "ShotAnimate", "inputs": {**animate, "keyframes": ["14", 0], "project_name": project + "_batch"}}
    return g


def test_shot_animate_reads_the_keyframes_from_the_project_folder(host, photos, model_dirs):
    n = 20
    result = host.run(long_movie_graph(n, "keyframe_set"))
    shown = previews(host, result)
    assert len(shown) == 16, "images_output preview: 16 keyframes spread over the movie"
    assert "20 keyframes in" in result.outputs["11"]["text"][0] and "16 of them" in result.outputs["11"]["text"][0]
    assert f"{n} shots, {n} made this run" in result.outputs["13"]["text"][0]
    from_files = json.loads((_project(host, "keyframe_set") / "manifest.json").read_text())
    from_batch = json.loads((_project(host, "keyframe_set_batch") / "manifest.json").read_text())
    assert [from_files["shots"][str(i)]["signature"] for i in range(n)] == \
        [from_batch["shots"][str(i)]["signature"] for i in range(n)], "the same keyframe pixels by either path"
    # the preview IMAGE is not the movie's keyframes: a clear message, not 16 shots
    wrong = long_movie_graph(n, "keyframe_set")
    wrong["15"]["inputs"]["keyframes"] = ["11", 0]
    refused = host.run(wrong)
    assert not refused.success
    assert "got 16 keyframe images, but the script has 20 keyframes (IdentityDiffusionRender's images_output is " \
           "preview: connect its keyframe_set)" in refused.error_text()


def test_temp_files_an_interrupted_run_left_are_removed_by_the_next(host, photos, model_dirs):
    g = graph(script(2), project="hygiene")
    g["13"] = {"class_type": "ShotAnimate", "inputs": {
        "keyframe_set": ["11", 2], "script": ["2", 0], "backend": "animatic", "fps": 4.0, "frames_per_clip": 25,
        "project_name": "hygiene", "seed": 0, "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple"}}
    previews(host, host.run(g))
    root = _project(host, "hygiene")
    # what a kill -9 in ShotAnimate leaves: a partial shot and a partial movie (nobody holds their writer's lock)
    (root / "shots" / ".tmp_k9x2m4q1.mp4").write_bytes(b"\x00" * 4096)
    (root / ".tmp_p0w8e7r6.mp4").write_bytes(b"\x00" * 786000)
    g["13"]["inputs"]["fps"] = 5.0
    result = host.run(g)
    previews(host, result)
    assert "removed 2 temporary files an interrupted run left" in result.outputs["11"]["text"][0]
    assert not list(root.rglob(".tmp_*"))


def test_script_file_choices_are_read_again_only_when_the_input_folder_changes(host):
    node = host.pack_submodule("nodes.script_encode_node")
    inp = Path(host.folder_paths.get_input_directory())
    uploads = inp / "many_uploads"
    uploads.mkdir(exist_ok=True)
    for j in range(2000):
        (uploads / f"frame_{j:05d}.png").write_bytes(b"")
    old = time.time() - 60
    for folder, _, _ in os.walk(inp):
        os.utime(folder, (old, old))
    g = {"1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
         "2": {"class_type": "ScriptEncode", "inputs": {
             "script": "title: Listing\nshots:\n  - id: a\n    scene: a room\n    action: nothing happens.\n    duration: 1\n",
             "script_file": "(none: use the text above)", "clip": ["1", 0], "face_embedder": "dlib"}},
         "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}}}
    assert host.run(g).ok
    listing = node._listings[host.pack_submodule("nodes.host").input_directory()]
    reads = listing.reads
    for _ in range(3):
        assert host.run(g).ok
    assert listing.reads == reads, "three prompts, an unchanged input folder: no folder read again"
    (inp / "scripts_new").mkdir()
    (inp / "scripts_new" / "listing.yaml").write_text(g["2"]["inputs"]["script"])
    for folder in (inp, inp / "scripts_new"):  # changed a minute ago (folders changed just now are read each time)
        os.utime(folder, (old, old + 1))
    g["2"]["inputs"]["script_file"] = "scripts_new/listing.yaml"
    assert host.run(g).ok
    assert "scripts_new/listing.yaml" in node.script_files()
    assert listing.reads == reads + 2, "the changed input folder and the new one, not the uploads"


def test_storyboard_sheet_reads_the_keyframe_set_as_it_reads_the_images(host, photos, model_dirs):
    """A long movie's storyboard sheet from the keyframe_set (each keyframe read from the project folder when it is
    pasted) is the sheet of the same keyframes as one IMAGE batch; a sheet fed the preview IMAGE (a few keyframes) is
    refused with a message that names keyframe_set, and one fed nothing names both inputs."""
    import numpy as np
    from PIL import Image

    n = 20
    g = graph(script(n, title_suffix=" sheet"), project="sheet_source")
    sheet = {"script_embeds": ["2", 1], "columns": 6, "cell_width": 64}
    g["13"] = {"class_type": "MovieDreamerStoryboardSheet",
               "inputs": {**sheet, "keyframe_set": ["11", 2], "project_name": "sheet_from_set"}}
    g["14"] = {"class_type": "MovieDreamerStoryboardSheet",
               "inputs": {**sheet, "keyframes": ["11", 0], "project_name": "sheet_from_images"}}
    # the widest cells in one column: 20 cells of 2048 x 2048 would be 86 M pixels, 1 GB as the node's IMAGE
    g["15"] = {"class_type": "MovieDreamerStoryboardSheet",
               "inputs": {**sheet, "columns": 1, "cell_width": 2048, "keyframe_set": ["11", 2], "project_name": "sheet_wide"}}
    result = host.run(g)
    assert result.success, result.error_text()
    from_set = np.asarray(Image.open(_project(host, "sheet_from_set") / "storyboard.png"))
    from_images = np.asarray(Image.open(_project(host, "sheet_from_images") / "storyboard.png"))
    assert from_set.shape == from_images.shape and from_set.shape[1] == 4 + 6 * (64 + 4)
    assert np.array_equal(from_set, from_images)
    from moviedreamer_core.storyboard_sheet import MAX_SHEET_PIXELS

    wide = Image.open(_project(host, "sheet_wide") / "storyboard.png")
    assert wide.width * wide.height <= MAX_SHEET_PIXELS and 1024 < wide.width - 8 < 2048, wide.size

    g["11"]["inputs"]["images_output"] = "preview"
    del g["13"]
    result = host.run(g)
    assert not result.success
    assert "got 16 keyframe images, but the script has 20 keyframes (IdentityDiffusionRender's images_output is " \
           "preview: connect its keyframe_set)" in result.error_text()

    g["14"]["inputs"].pop("keyframes")
    result = host.run(g)
    assert not result.success and "connect the keyframes" in result.error_text()
