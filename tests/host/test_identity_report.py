"""The per-keyframe identity report through the real executor: IdentityDiffusionRender checks each rendered keyframe
with the script's own face embedder, saves the report in the movie project's manifest, sends it with the keyframe's
websocket message (the storyboard panel), and never checks a resumed keyframe again unless its stored report no longer
fits; a project from before the reports gains them without any keyframe being made again."""

from __future__ import annotations

import json
from pathlib import Path

from .test_render import graph, previews, script


def project_folder(host, name: str) -> Path:
    return Path(host.folder_paths.get_output_directory()) / "moviedreamer" / name


def manifest(host, name: str) -> dict:
    return json.loads((project_folder(host, name) / "manifest.json").read_text(encoding="utf-8"))


def summary(result) -> str:
    return result.outputs["11"]["text"][0]


def stamps(host, name: str) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (project_folder(host, name) / "keyframes").iterdir()}


CAST = [["Eileen"], ["Grace"], ["Eileen", "Grace"], []]  # test_render.script's shots, in turn


def test_rendered_keyframes_carry_their_identity_report_in_the_manifest(host, photos, model_dirs):
    result = host.run(graph(script(4, title_suffix=" identity"), project="identity_report"))
    previews(host, result)
    entries = manifest(host, "identity_report")["keyframes"]
    assert sorted(entries, key=int) == ["0", "1", "2", "3"]
    for k, entry in entries.items():
        report = entry["identity"]
        assert report["version"] == 1 and report["space"].startswith("clip_vision_crop:comfy.clip_vision.")
        assert report["threshold"] == 0.8 and len(report["key"]) == 16
        assert [c["name"] for c in report["characters"]] == CAST[int(k)], "the shot's characters, in script order"
        # no face on a 64 px render of a random tiny model: the CLIP-crop embedder reads the centre crop as one face
        assert len(report["faces"]) == 1 and report["faces"][0]["box"] == [0, 0, 64, 64]
        assert sum(c["face"] is not None for c in report["characters"]) == min(1, len(CAST[int(k)])), "one face to share"
        for c in report["characters"]:
            assert c["found"] == (c["similarity"] is not None and c["similarity"] >= 0.8)
            assert ("missing" in c["flags"]) == (not c["found"])
        assert report["ok"] == (not report["flags"])
    text = summary(result)
    assert "identity report (clip_vision_crop:comfy.clip_vision." in text and "threshold 0.8" in text
    assert "4 keyframes checked in" in text and "0 kept from earlier runs" in text


def test_a_resumed_keyframe_keeps_its_report_and_an_old_project_gains_them_without_rendering(host, photos, model_dirs):
    name = "identity_resume"
    first = host.run(graph(script(3, title_suffix=" resume"), project=name))
    previews(host, first)
    reports = {k: e["identity"] for k, e in manifest(host, name)["keyframes"].items()}
    files = stamps(host, name)
    again = host.run(graph(script(3, title_suffix=" resume"), project=name))
    previews(host, again)
    assert "0 keyframes checked in 0.00 s, 3 kept from earlier runs" in summary(again)
    assert {k: e["identity"] for k, e in manifest(host, name)["keyframes"].items()} == reports
    assert stamps(host, name) == files, "nothing re-made"
    # a project made before the reports existed: its entries have none
    path = project_folder(host, name) / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["keyframes"]["1"]["identity"]
    path.write_text(json.dumps(data), encoding="utf-8")
    old = host.run(graph(script(3, title_suffix=" resume"), project=name))
    previews(host, old)
    assert "1 keyframes checked in" in summary(old) and "2 kept from earlier runs" in summary(old)
    assert {k: e["identity"] for k, e in manifest(host, name)["keyframes"].items()} == reports, "deterministic"
    assert stamps(host, name) == files, "the report is made from the saved keyframe; no keyframe rendered"


def test_dlib_reports_every_character_missing_from_faceless_renders(host, photos, model_dirs):
    """ScriptEncode with dlib on the real photos; the tiny model draws no face, so every character on screen is
    missing and the summary says so (identity_weight 0: this renderer reads another identity space)."""
    g = graph(script(4, title_suffix=" dlib"), project="identity_dlib", identity_weight=0.0)
    g["2"]["inputs"]["face_embedder"] = "dlib"
    g["3"]["inputs"]["image"] = "hopper.png"
    result = host.run(g)
    previews(host, result)
    entries = manifest(host, "identity_dlib")["keyframes"]
    for k in range(4):
        report = entries[str(k)]["identity"]
        assert report["space"] == "dlib_resnet_v1" and report["threshold"] == 0.91 and report["faces"] == []
        assert [(c["name"], c["flags"]) for c in report["characters"]] == [(n, ["missing"]) for n in CAST[k]]
        assert report["flags"] == [f"{n} missing (no face)" for n in CAST[k]]
    text = summary(result)
    assert "identity report (dlib_resnet_v1, threshold 0.91): 4 keyframes checked" in text
    assert "3 flagged: #0 Eileen missing (no face); #1 Grace missing (no face); #2 Eileen missing (no face) (+1 more in " \
           "the manifest)" in text


def test_each_keyframe_message_of_the_panel_carries_its_report(server, photos, model_dirs):
    """Over the real server's websocket (what the storyboard panel listens to): each ``moviedreamer.keyframe``
    message holds the panel's view of the report saved in the manifest, for a fresh render and for a resumed one."""
    import shutil

    from moviedreamer_core.identity_report import panel_view

    md, _ = model_dirs
    shutil.copy(md / "tiny_renderer.safetensors", server.workdir / "models" / "moviedreamer" / "tiny_renderer.safetensors")
    for name in ("astronaut.png", "hopper.png"):
        shutil.copy(photos / name, server.dirs["input"] / name)
    prompt = graph(script(3, title_suffix=" identity panel"), project="identity_panel")
    folder = server.dirs["output"] / "moviedreamer" / "identity_panel"
    for run in ("all", "preview"):  # the second run differs (the server would reuse its cached outputs), resumes
        prompt["11"]["inputs"]["images_output"] = run
        entry, messages = server.run(prompt, timeout=300)
        assert entry["status"]["status_str"] == "success", entry["status"]
        entries = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["keyframes"]
        frames = [m["data"] for m in messages if m.get("type") == "moviedreamer.keyframe"]
        assert [f["index"] for f in frames] == [0, 1, 2], run
        assert [f["identity"] for f in frames] == [panel_view(entries[str(k)]["identity"]) for k in range(3)], run
        assert [[c["name"] for c in f["identity"]["characters"]] for f in frames] == CAST[:3]
        checked = "3 keyframes checked" if run == "all" else "0 keyframes checked in 0.00 s, 3 kept"
        assert checked in entry["outputs"]["11"]["text"][0], entry["outputs"]["11"]


def test_fewshot_benchmark_command_reports_both_plans_and_ends_with_a_json_line(host, fresh_python):
    """The README's ``python benchmarks/identity_report_fewshot.py --films-seed S --films N`` in a fresh interpreter, on
    one film of a seed nothing else uses with 2 sampling steps: the table's rows (ground truth, the shipped planner
    without and with its references) and the last line one JSON object with the report's figures per row."""
    proc = fresh_python.run("python benchmarks/identity_report_fewshot.py --films-seed 123 --films 1", "--steps", "2",
                            timeout=600, env={"COMFYUI_PATH": str(host.root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "1 films of seed 123" in proc.stdout and "threshold 0.5" in proc.stdout
    summary = json.loads(lines[-1])
    rows = summary["rows"]
    assert list(rows) == ["ground truth keyframes", "shipped planner, without references", "shipped planner, with references"]
    assert summary["keyframes"] == 24 and all(r["keyframes"] == 24 and r["characters"] > 0 for r in rows.values())
    for row in rows.values():
        for key in ("found", "missing", "doubled", "closer_to_other", "flagged_keyframes"):
            assert 0.0 <= row[key] <= 1.0, (key, row)
        assert abs(row["found"] + row["missing"] - 1.0) < 1e-3 and row["report_ms"] > 0
    assert rows["ground truth keyframes"]["found"] >= 0.95, "the report's own error on the toy world's keyframes"
    assert any(line.startswith("| shipped planner, with references | ") for line in lines), proc.stdout
