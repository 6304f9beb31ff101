"""The toy movie made by a master and two workers (ComfyUI-Distributed) is the movie one instance makes.

Same seeds per keyframe and shot, one torch thread everywhere: bit-identical keyframes, the same shots frame for
frame, the same assembled movie. Each participant makes a share; workers that do not share the master's output
folder send their files through the collector; a worker killed mid-movie loses only what it had not finished,
and queuing again completes the movie.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moviedreamer_core.distribution.split import ANIMATIC_SECOND_COST, outlines_of_script, split_shots
from moviedreamer_core.script import load_script
from moviedreamer_core.toycinema import generate_film
from moviedreamer_core.toycinema.film_script import script_text
from moviedreamer_core.video_io import iter_frames

from .cluster import running_cluster
from .toy_prompts import WORKFLOW, node_of, toy_prompt
from ..host.harness import PACK_DIR, GraphError


def project(cluster, name: str) -> Path:
    """The project folder on the master (the shared output folder, or the master's own)."""
    return Path(cluster.output_dir or cluster.master.dirs["output"]) / "moviedreamer" / name


def keyframes(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted((folder / "keyframes").glob("keyframe_*.png"))}


def recorded_keyframes(folder: Path) -> set[str]:
    """The keyframes a project has recorded, read as they are on disk (manifest.json and every journal), without
    opening the project (which would fold the journals of a run under way)."""
    manifest = folder / "manifest.json"
    found = set(json.loads(manifest.read_text()).get("keyframes", {})) if manifest.is_file() else set()
    for journal in [folder / "manifest.journal", *folder.glob("journals/*.jsonl")]:
        lines = journal.read_bytes().split(b"\n") if journal.is_file() else []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            key = record.get("key") if isinstance(record, dict) else None
            if isinstance(key, list) and len(key) == 2 and key[0] == "keyframes" and "value" in record:
                found.add(str(key[1]))
    return found


def frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(str(path))))


def assert_same_movie(a: Path, b: Path, name_a: str, name_b: str) -> None:
    ka, kb = keyframes(a), keyframes(b)
    assert ka and ka.keys() == kb.keys()
    for name in ka:
        assert np.array_equal(ka[name], kb[name]), f"keyframe {name} differs"
    shots_a, shots_b = sorted((a / "shots").glob("*.mp4")), sorted((b / "shots").glob("*.mp4"))
    assert [p.name for p in shots_a] == [p.name for p in shots_b]
    for x, y in zip(shots_a, shots_b):
        fx, fy = frames(x), frames(y)
        assert fx.shape == fy.shape, f"{x.name}: {fx.shape} vs {fy.shape}"
        assert np.array_equal(fx, fy), f"{x.name}: frames differ"
    ma, mb = frames(a / f"{name_a}.mp4"), frames(b / f"{name_b}.mp4")
    assert ma.shape == mb.shape and np.array_equal(ma, mb), "the assembled movies differ"


def texts(entry: dict) -> dict[str, str]:
    return {node: "\n".join(out.get("text", [])) for node, out in entry["outputs"].items()}


def long_script(seed: int, shots: int) -> str:
    return "# toy film for the distributed tests\n" + script_text(generate_film(seed, n_shots=shots), "world")


@pytest.fixture(scope="module")
def reference(cluster):
    """The toy movie on one instance (the master, through its ordinary /prompt queue)."""
    entry, _ = cluster.master.run(toy_prompt("toy_single", collector=False), timeout=300)
    assert entry["status"]["status_str"] == "success", cluster.log_tails(40)
    return entry


def test_the_distributed_toy_movie_is_the_single_instance_movie(cluster, reference):
    prompt = toy_prompt("toy_dist")
    entry = cluster.run(prompt, timeout=300)
    assert cluster.last_queue["worker_count"] == 2, cluster.last_queue
    assert_same_movie(project(cluster, "toy_single"), project(cluster, "toy_dist"), "toy_single", "toy_dist")
    # each keyframe's identity report travelled with it: the master's manifest holds the one instance's reports
    reports = [{k: e["identity"] for k, e in json.loads((project(cluster, name) / "manifest.json").read_text())["keyframes"].items()}
               for name in ("toy_single", "toy_dist")]
    assert reports[0] and reports[0] == reports[1]
    # every gathered keyframe keeps its file's SHA-256 (a keyframe replaced on disk is made again) and the digest of
    # its plan's makers, which Gather Movie found the same for every participant
    entries = json.loads((project(cluster, "toy_dist") / "manifest.json").read_text())["keyframes"].values()
    assert all(e.get("sha256") for e in entries) and len({e.get("plan") for e in entries}) == 1 and None not in {
        e.get("plan") for e in entries}
    # the storyboard sheet after Gather Movie reads the gathered keyframe_set: every keyframe, the one instance's sheet
    sheets = [np.asarray(Image.open(project(cluster, name) / "storyboard.png")) for name in ("toy_single", "toy_dist")]
    assert sheets[0].shape == sheets[1].shape and np.array_equal(sheets[0], sheets[1])
    # every participant made a share: the gather node names them with what they delivered
    gathered = texts(entry)[node_of(prompt, "MovieDreamerGather")]
    script = load_script(prompt[node_of(prompt, "ScriptEncode")]["inputs"]["script"], image_count=6)
    shares = split_shots(outlines_of_script(script), 3, ANIMATIC_SECOND_COST)
    for who, share in zip(["master", *cluster.worker_ids], shares):
        assert share.shots, "the toy movie is long enough for three shares"
        assert f"{who}: {len(share.keyframes)} keyframes, {len(share.shots)} shots" in gathered, gathered
    for i in range(2):
        worker = cluster.wait_worker(i, cluster.last_queue["prompt_id"])
        render = texts(worker)[node_of(prompt, "IdentityDiffusionRender")]
        share = shares[i + 1]
        assert f"this participant's share: {len(share.keyframes)} of {script.n_keyframes} keyframes" in render, render
        assert "files left in the shared project folder" in texts(worker)[node_of(prompt, "ShotAnimate")]
    # the master's own share stays where Gather Movie gathers (it said "the shared folder" with unshared workers too)
    assert "files kept in the master's project folder" in texts(entry)[node_of(prompt, "ShotAnimate")]


def test_one_instance_resumes_a_distributed_movie_and_makes_its_storyboard_sheet(cluster):
    """After a distributed run, the one-instance toy workflow (workflows/api/moviedreamer_toycinema_api.json, whose
    StoryboardSheet needs every keyframe as IMAGE rows) queued on the master's ordinary queue with the same project
    makes nothing again: no keyframe or shot file is rewritten, ShotAnimate made 0 shots, and the sheet is saved."""
    cluster.run(toy_prompt("toy_resumed"), timeout=300)
    folder = project(cluster, "toy_resumed")
    files = sorted((folder / "keyframes").glob("keyframe_*.png")) + sorted((folder / "shots").glob("*.mp4"))
    written = {p.name: p.stat().st_mtime_ns for p in files}
    assert any(n.endswith(".png") for n in written) and any(n.endswith(".mp4") for n in written), written
    single = json.loads((WORKFLOW.parent / "moviedreamer_toycinema_api.json").read_text())
    for node in single.values():
        if "project_name" in node["inputs"]:
            node["inputs"]["project_name"] = "toy_resumed"
    entry, _ = cluster.master.run(single, timeout=300)
    assert entry["status"]["status_str"] == "success", cluster.log_tails(40)
    animated = texts(entry)[node_of(single, "ShotAnimate")]
    assert ", 0 made this run" in animated, animated
    assert {p.name: p.stat().st_mtime_ns for p in files} == written, "files were made again"
    assert (folder / "storyboard.png").is_file()


def test_a_master_that_only_orchestrates(cluster, reference):
    prompt = toy_prompt("toy_workers_only", master_renders=False)
    entry = cluster.run(prompt, timeout=300)
    gathered = texts(entry)[node_of(prompt, "MovieDreamerGather")]
    assert "master:" in gathered and "master: 0 keyframes, 0 shots" in gathered, gathered
    assert_same_movie(project(cluster, "toy_single"), project(cluster, "toy_workers_only"), "toy_single", "toy_workers_only")


def test_a_worker_killed_mid_movie_loses_only_its_unfinished_work(cluster):
    script = long_script(4242, 30)
    prompt = toy_prompt("toy_killed", script=script)
    parsed = load_script(script, image_count=6)
    share = split_shots(outlines_of_script(parsed), 3, ANIMATIC_SECOND_COST)[1]  # worker 1's
    folder = project(cluster, "toy_killed")
    cluster.update_settings(worker_timeout_seconds=8)
    try:
        prompt_id = cluster.queue(prompt)
        mine = [folder / "keyframes" / f"keyframe_{k:05d}.png" for k in share.keyframes]
        deadline = time.time() + 240
        while sum(p.exists() for p in mine) < 3:  # worker 1 is under way
            assert time.time() < deadline, cluster.log_tails(30)
            time.sleep(0.05)
        cluster.kill_worker(0)
        # finished: recorded in the project (a keyframe whose file landed just before the kill, its record not, is
        # made again, as it should be: it is the one being recorded)
        recorded = recorded_keyframes(folder)
        finished = {p.name: p.stat().st_mtime_ns for k, p in zip(share.keyframes, mine)
                    if p.exists() and str(k) in recorded}
        entry = cluster.wait(prompt_id, timeout=300)
        assert entry["status"]["status_str"] == "error"
        message = json.dumps(entry["status"]["messages"])
        assert "the distributed run is incomplete" in message and f"{cluster.worker_ids[0]}:" in message, message
        assert len(finished) < len(mine), "the kill came before worker 1 finished its keyframes"
        cluster.restart_worker(0)
        again = cluster.run(prompt, timeout=300)
        assert again["status"]["status_str"] == "success"
        for name, mtime in finished.items():  # finished work was kept, not made again
            assert (folder / "keyframes" / name).stat().st_mtime_ns == mtime, f"{name} was rendered again"
        assert len(keyframes(folder)) == parsed.n_keyframes
        assert len(list((folder / "shots").glob("*.mp4"))) == len(parsed.shots)
    finally:
        cluster.update_settings(worker_timeout_seconds=20)
        if not cluster.workers[0].running():
            cluster.restart_worker(0)


def test_gather_movie_refuses_another_projects_results_before_writing(cluster, reference):
    """Gather Movie with another project_name than ShotAnimate's: refused naming project_name, on one instance and
    in a distributed run, before anything is written into (or retired from) its project folder."""
    single = toy_prompt("toy_single", collector=False)
    single[node_of(single, "MovieDreamerGather")]["inputs"]["project_name"] = "toy_not_this_one"
    entry, _ = cluster.master.run(single, timeout=300)
    message = json.dumps(entry["status"].get("messages"))
    assert entry["status"]["status_str"] == "error" and "project_name" in message and "results" in message, message
    assert not project(cluster, "toy_not_this_one").exists()
    assert (project(cluster, "toy_single") / "toy_single.mp4").is_file()
    dist = toy_prompt("toy_dist")
    dist[node_of(dist, "MovieDreamerGather")]["inputs"]["project_name"] = "toy_not_this_one_either"
    entry = cluster.wait(cluster.queue(dist), timeout=300)
    message = json.dumps(entry["status"].get("messages"))
    assert entry["status"]["status_str"] == "error" and "project_name" in message, message
    assert not project(cluster, "toy_not_this_one_either").exists()


def test_a_master_renders_that_is_not_a_boolean_is_refused_at_queue_time(cluster):
    prompt = toy_prompt("toy_renders_zero")
    for class_type in ("IdentityDiffusionRender", "ShotAnimate"):
        prompt[node_of(prompt, class_type)]["inputs"]["master_renders"] = 0
    with pytest.raises(GraphError, match="master_renders of node"):
        cluster.queue(prompt)
    assert not project(cluster, "toy_renders_zero").exists()


def test_a_worker_named_master_is_refused_at_queue_time(cluster):
    """ComfyUI-Distributed lets a worker's id be "master": the master and that worker would both make the master's
    share into journals/master.jsonl and the run would never finish. Refused when queued, naming the id."""
    config = cluster.config()
    renamed = json.loads(json.dumps(config))
    renamed["workers"][0]["id"] = "master"
    cluster.write_config(renamed)
    try:
        with pytest.raises(GraphError, match="give worker 'master' another id"):
            cluster.queue(toy_prompt("toy_worker_named_master"), enabled_worker_ids=["master", cluster.worker_ids[1]])
        time.sleep(2)  # what the workers got was refused too: nothing is made
        assert not (project(cluster, "toy_worker_named_master") / "keyframes").exists() or \
            not list((project(cluster, "toy_worker_named_master") / "keyframes").iterdir())
    finally:
        cluster.write_config(config)
        time.sleep(0.01)


# ------------------------------------------------- workers with their own folders (a second cluster, started last)

@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """A second cluster whose master and workers each have their own output folder: workers send their files."""
    yield from running_cluster(tmp_path_factory, "own_folders", shared_output=False)


def test_workers_with_their_own_folders_send_their_files(separate, cluster, reference):
    prompt = toy_prompt("toy_sent")
    entry = separate.run(prompt, timeout=300)
    gathered = texts(entry)[node_of(prompt, "MovieDreamerGather")]
    assert "files received from participants that do not share this folder" in gathered, gathered
    assert_same_movie(project(cluster, "toy_single"), project(separate, "toy_sent"), "toy_single", "toy_sent")
    for i in range(2):
        worker = separate.wait_worker(i, separate.last_queue["prompt_id"])
        assert "files sent to the master" in texts(worker)[node_of(prompt, "ShotAnimate")]


def test_shots_whose_ids_hold_spaces_are_sent_and_gathered(separate):
    """A shot's file is named after its id with the spaces kept (``shots/shot_00004_shot 05_ sc_ne _5.mp4``): Gather
    Movie refused a worker's payload carrying such a name ("is not a keyframe or shot file of a project") and the
    distributed run failed. Every shot id here holds spaces, a comma, brackets and a letter of another alphabet."""
    base = toy_prompt("toy_spaced")
    script = re.sub(r"(?m)^- id: s0*(\d+)$", lambda m: f'- id: "shot {int(m.group(1)):02d}, scène ({m.group(1)})"',
                    base[node_of(base, "ScriptEncode")]["inputs"]["script"])
    prompt = toy_prompt("toy_spaced", script=script)
    parsed = load_script(script, image_count=6)
    shares = split_shots(outlines_of_script(parsed), 3, ANIMATIC_SECOND_COST)
    assert shares[1].shots and shares[2].shots, "each worker animates shots"
    entry = separate.run(prompt, timeout=300)
    gathered = texts(entry)[node_of(prompt, "MovieDreamerGather")]
    assert "files received from participants that do not share this folder" in gathered, gathered
    for who, share in zip(["master", *separate.worker_ids], shares):
        assert f"{who}: {len(share.keyframes)} keyframes, {len(share.shots)} shots" in gathered, gathered
    folder = project(separate, "toy_spaced")
    recorded = json.loads((folder / "manifest.json").read_text())["shots"]
    files = {int(i): e["file"] for i, e in recorded.items()}
    assert set(files) == set(range(len(parsed.shots))) and all(" " in rel for rel in files.values()), files
    for s in shares[1].shots + shares[2].shots:  # the workers' shots, named as the project names them
        assert files[s] == f"shots/shot_{s:05d}_shot {s + 1:02d}_ sc_ne _{s + 1}.mp4", files[s]
    assert all((folder / rel).is_file() for rel in files.values()) and (folder / "toy_spaced.mp4").is_file()


README_TOY_SCRIPT = """title: README Distributed Program
characters:
  - {name: Ava, description: a girl, references: [0]}
  - {name: Bo, description: a boy, references: [1]}
shots:
  - {id: s1, scene: a sandy beach, action: Ava walks along the beach., characters: [Ava], camera: wide, duration: 1}
  - {id: s2, scene: a snowfield, action: Bo waves., characters: [Bo], camera: medium, duration: 1}
"""


def test_readme_distributed_queue_program_prints_the_answer_or_the_refusal(cluster, tmp_path, fresh_python):
    """The README's program that POSTs to ``/distributed/queue``, saved as a file and run as printed (its server swapped
    for the master's) from a folder holding the pack's ``workflows/`` and ``my_script.yaml``. A refused prompt is
    HTTP 500 from ComfyUI-Distributed 1.4.4: the program printed a bare ``HTTPError`` traceback (found running the
    README's commands); it prints the refusal, which names the node, the input and each problem."""
    import ast

    from ..readme_blocks import readme_python_program

    program = readme_python_program("/distributed/queue", cluster.master.url)
    (tmp_path / "workflows").symlink_to(PACK_DIR / "workflows", target_is_directory=True)
    (tmp_path / "my_program.py").write_text(program, encoding="utf-8")
    readme = (PACK_DIR / "README.md").read_text(encoding="utf-8")
    (tmp_path / "my_script.yaml").write_text(re.findall(r"```yaml\n(.*?)```", readme, re.S)[0], encoding="utf-8")
    refused = fresh_python.run("python -I my_program.py", cwd=tmp_path, timeout=120)
    assert refused.returncode == 0 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert refused.stdout.startswith("Invalid prompt:"), refused.stdout[-3000:]
    # the node and the problem are named: ComfyUI-Distributed prints "Invalid prompt: " and the host's error with its
    # node errors always appended (a dict's repr: "'3': {'errors': [...], ..., 'class_type': 'ScriptEncode'}"); it
    # summarises them as "ScriptEncode#3: ..." only when the host's own details are empty, which depends on the order
    # the host validates outputs in (a set: it varies between runs), so that form is not required
    assert "'3': {'errors': [" in refused.stdout and "'class_type': 'ScriptEncode'" in refused.stdout, refused.stdout[-3000:]
    assert 'file "ava_front.png" not found' in refused.stdout, refused.stdout[-3000:]
    # queued: the toy cinema's distributed twin (its ScriptEncode is node 2), on the master and both workers
    (tmp_path / "my_program.py").write_text(
        program.replace("moviedreamer_movie_distributed_api.json", "moviedreamer_toycinema_distributed_api.json"), encoding="utf-8")
    (tmp_path / "my_script.yaml").write_text(README_TOY_SCRIPT, encoding="utf-8")
    queued = fresh_python.run("python -I my_program.py", cwd=tmp_path, timeout=120)
    assert queued.returncode == 0 and "Traceback" not in queued.stderr, queued.stderr[-3000:]
    answer = ast.literal_eval(queued.stdout.strip())
    assert answer["worker_count"] == 2, answer
    entry = cluster.wait(answer["prompt_id"], timeout=300)
    assert entry["status"].get("status_str") == "success", entry["status"]
