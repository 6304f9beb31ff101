"""``python -m moviedreamer_core.queue`` against the real ComfyUI server on 127.0.0.1, with the tiny movie workflow
(``tests/workflows/moviedreamer_movie_tiny_api.json``: the test nodes, the zero-shot planner, the tiny renderer, the
animatic) run as a subprocess exactly as a user runs it."""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .harness import PACK_DIR
from .workflow_convert import ui_to_api

TINY_API = PACK_DIR / "tests" / "workflows" / "moviedreamer_movie_tiny_api.json"
TINY_UI = PACK_DIR / "tests" / "workflows" / "moviedreamer_movie_tiny.json"

SCRIPT = """
title: Queue Test
characters:
  - name: Ava
    description: a young woman in a green raincoat
    references: [0]
shots:
  - id: a
    scene: a cliff at dawn
    action: Ava walks to the edge.
    characters: [Ava]
    camera: wide
    duration: 1
  - id: b
    scene: a lamp room
    action: [Ava lights the lamp., Ava looks at the sea.]
    characters: [Ava]
    duration: 1
    transition: dissolve
"""


def run_cli(fresh_python, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m moviedreamer_core.queue ARGS`` from the pack's folder, in a fresh interpreter (as the README prints it)."""
    return fresh_python.run("python -m moviedreamer_core.queue", *args, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_server(server, model_dirs):
    """The loopback server (with MOVIEDREAMER_TEST_NODES=1) holding the tiny renderer the tiny workflow names."""
    md, _ = model_dirs
    shutil.copy(md / "tiny_renderer.safetensors", server.workdir / "models" / "moviedreamer" / "tiny_renderer.safetensors")
    info = server.get("/object_info/MovieDreamerTestTinySD")
    assert info.status_code == 200 and info.json(), "the server does not register the test nodes"
    return server


def test_tiny_ui_workflow_matches_its_api_twin_and_validates(host, model_dirs):
    ui = json.loads(TINY_UI.read_text())
    api = json.loads(TINY_API.read_text())
    assert ui_to_api(ui, lambda t: host.nodes.NODE_CLASS_MAPPINGS[t].INPUT_TYPES()) == api
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt("tiny", api, None))
    assert valid, (error, node_errors)
    assert set(outputs) == {"10", "11"}


@pytest.mark.slow
def test_cli_queues_the_tiny_movie_and_prints_progress_and_files(tiny_server, tmp_path, fresh_python):
    script = tmp_path / "queue_test.yaml"
    script.write_text(SCRIPT)
    proc = run_cli(fresh_python, str(TINY_API), "--script", str(script), "--server", tiny_server.url, "--project", "queue_cli",
                   "--output-dir", str(tiny_server.dirs["output"]), "--set", "9.seed=3")
    assert proc.returncode == 0, (proc.stdout, proc.stderr, tiny_server.log_tail())
    err = proc.stderr
    assert "queued prompt" in err
    assert "node 9 IdentityDiffusionRender" in err and "step 2/2" in err, err
    assert "node 11 ShotAnimate" in err and "keyframe 3/3" in err, err
    assert "[1/11]" in err and "done: prompt" in err, err
    paths = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    movies = [p for p in paths if p.endswith(".mp4")]
    assert len(movies) == 1 and Path(movies[0]).name == "queue_cli.mp4", proc.stdout
    assert not [p for p in paths if p.endswith(".png")], "a Preview Image's temporary copies are not listed"
    for p in movies:
        assert Path(p).is_file() and Path(p).stat().st_size > 0, p
    # the keyframes are the project's; no copy of them is written beside it on every run (a Save Image did)
    assert not list((tiny_server.dirs["output"] / "moviedreamer").glob("*.png"))
    assert any(line.startswith("# node 9 IdentityDiffusionRender: 3 keyframes in ") for line in proc.stdout.splitlines())
    assert Path(movies[0]).resolve().is_relative_to((tiny_server.dirs["output"] / "moviedreamer" / "queue_cli").resolve())
    assert any(line.startswith("# node 11 ShotAnimate: ") and "in 2 shots" in line for line in proc.stdout.splitlines()), proc.stdout
    # the script went in through the CLI: the manifest holds its title's shots a and b
    manifest = json.loads((tiny_server.dirs["output"] / "moviedreamer" / "queue_cli" / "manifest.json").read_text())
    assert "Queue Test" in json.dumps(manifest)


def test_cli_reports_a_broken_script_before_queueing(tiny_server, tmp_path, fresh_python):
    script = tmp_path / "broken.yaml"
    script.write_text(SCRIPT.replace("duration: 1\n  - id: b", "duration: 0\n  - id: b").replace("[Ava]\n    duration: 1",
                                                                                                 "[Mira]\n    duration: 1"))
    before = tiny_server.get("/history").json()
    proc = run_cli(fresh_python, str(TINY_API), "--script", str(script), "--server", tiny_server.url)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "2 problems in the script" in proc.stderr, proc.stderr
    assert "shots[0].duration" in proc.stderr and 'unknown character "Mira"' in proc.stderr, proc.stderr
    assert tiny_server.get("/history").json().keys() == before.keys(), "nothing may be queued"


def test_cli_names_a_missing_model_file_and_its_folder_before_queueing(tiny_server, fresh_python):
    before = tiny_server.get("/history").json()
    proc = run_cli(fresh_python, str(TINY_API), "--server", tiny_server.url, "--set", "8.renderer_name=story_renderer.safetensors",
                   "--set", "5.face_embedder=arcface")
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    err = proc.stderr
    # found by the command, not the server, which never saw the prompt (a review: it said "the server refused")
    assert err.splitlines()[0] == ("error: not queued: checked before sending against the server's node list "
                                   "(/object_info), 2 inputs name a model file or choice the server does not have "
                                   "(the prompt was not sent)"), err
    assert "refused" not in err, err
    assert ('node 8 (MovieDreamerRendererLoader) input renderer_name: model file "story_renderer.safetensors" not found: '
            "put it in models/moviedreamer/") in err, err
    assert "tiny_renderer.safetensors" in err, "the files the server does have are listed"
    assert 'node 5 (ScriptEncode) input face_embedder: "arcface" is not one of the allowed values' in err, err
    assert "Traceback" not in err
    assert tiny_server.get("/history").json().keys() == before.keys(), "nothing may be queued"


def test_cli_says_what_else_may_follow_a_missing_model_file(tiny_server, tmp_path, fresh_python):
    """A review: with a model file missing, the command's check before sending said "the server refused the prompt" and
    nothing of the script's reference images the server would refuse next, so a user who added the model file was
    refused a second time. The prompt is still not sent (the host queues a prompt whose outputs validate in part and
    leaves V3 choices unchecked: it could run until the missing file fails), but the message says that the server's own
    check is still to come, and how to check the reference files now; both later refusals say what they name."""
    script = tmp_path / "refs.yaml"
    script.write_text(SCRIPT.replace("references: [0]", "references: [ava_front.png]"))
    before = tiny_server.get("/history").json()
    common = (str(TINY_API), "--script", str(script), "--server", tiny_server.url)
    first = run_cli(fresh_python, *common, "--set", "8.renderer_name=story_renderer.safetensors")
    assert first.returncode == 4, (first.stdout, first.stderr)
    lines = first.stderr.splitlines()
    assert lines[0].startswith("error: not queued: checked before sending") and "1 input names a model file" in lines[0], lines
    assert lines[1].startswith('  node 8 (MovieDreamerRendererLoader) input renderer_name: model file '
                               '"story_renderer.safetensors" not found: put it in models/moviedreamer/ on the server'), lines
    assert lines[2:] == ["The server has not validated the rest of the prompt yet: once these are fixed, it may refuse it "
                         "for other problems (such as the script's reference images missing from its input folder); "
                         "--input-dir <ComfyUI>/input checks the script's reference files now."], lines
    assert tiny_server.get("/history").json().keys() == before.keys(), "nothing may be queued"
    # what the hint says: the reference files checked here, before the server is asked anything (exit 2)
    local = run_cli(fresh_python, *common, "--set", "8.renderer_name=story_renderer.safetensors",
                    "--input-dir", str(tiny_server.dirs["input"]))
    assert local.returncode == 2, (local.stdout, local.stderr)
    assert '"ava_front.png"' in local.stderr and "not found" in local.stderr, local.stderr
    # the model file in place: the server's own validation, which the first message said was still to come
    second = run_cli(fresh_python, *common)
    assert second.returncode == 4, (second.stdout, second.stderr)
    assert second.stderr.startswith("error: the server refused the prompt"), second.stderr
    assert 'file "ava_front.png" not found' in second.stderr, second.stderr
    assert tiny_server.get("/history").json().keys() == before.keys(), "nothing may be queued"


def test_cli_refuses_an_input_its_node_type_does_not_have_before_queueing(tiny_server, fresh_python):
    """The host ignores an input a node does not know: ``--set 9.step=2`` (for ``steps``) rendered with the workflow's
    steps and exited 0 (an audit). The name is checked against the server's node types: a usage error, nothing
    queued; an optional input the node has but the workflow leaves out is still taken."""
    before = tiny_server.get("/history").json()
    proc = run_cli(fresh_python, str(TINY_API), "--server", tiny_server.url, "--set", "9.step=2")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "error: --set '9.step=2': node 9 (IdentityDiffusionRender) has no input 'step' (its inputs: " in proc.stderr
    assert "steps" in proc.stderr and "Traceback" not in proc.stderr
    assert tiny_server.get("/history").json().keys() == before.keys(), "nothing may be queued"


def test_cli_makes_the_servers_validation_refusal_readable(tiny_server, fresh_python):
    proc = run_cli(fresh_python, str(TINY_API), "--server", tiny_server.url, "--set", "9.steps=0", "--set", "4.width=0",
                   "--set", '7.script_embeds=["1", 0]')
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: the server refused the prompt: Prompt outputs failed validation", lines
    # the pack's own check (the host leaves min/max of nodes with validate_inputs to them), shown once for the node
    assert [l for l in lines if l.startswith("  node 9 ")] == ["  node 9 (IdentityDiffusionRender): steps: 0 is smaller than the minimum 1"], lines
    assert any(l.startswith("  node 4 (EmptyImage) input width: Value 0 smaller than min of 1") for l in lines), lines
    assert any(l.startswith("  node 7 (ARKeyframePlanner) input script_embeds: Return type mismatch") for l in lines), lines


def test_cli_warns_when_the_server_runs_only_part_of_the_prompt(tiny_server, fresh_python):
    """The host queues a prompt when at least one of its outputs validates and drops the others, answering 200 with
    their ``node_errors``: the command said nothing of them, so part of the workflow silently did not run. Here the
    animation (output 11) links its model to a node the prompt does not have; the keyframes (output 10) still run."""
    proc = run_cli(fresh_python, str(TINY_API), "--server", tiny_server.url, "--project", "queue_cli_partial",
                   "--set", '11.model=["999", 0]', "--quiet")
    assert proc.returncode == 0, (proc.stdout, proc.stderr, tiny_server.log_tail())
    lines = proc.stderr.splitlines()
    assert lines[0] == "warning: the server queued the prompt but will not run the outputs these inputs feed", lines
    assert any(l.startswith("  node 11 (ShotAnimate)") for l in lines), lines
    assert not list((tiny_server.dirs["output"] / "moviedreamer" / "queue_cli_partial").glob("*.mp4"))


def test_cli_reports_an_execution_error_with_its_node(tiny_server, tmp_path, fresh_python):
    # ShotAnimate with an image-to-video "model" that is the tiny SD1.5 UNet: refused when the node runs
    proc = run_cli(fresh_python, str(TINY_API), "--server", tiny_server.url, "--project", "queue_cli_error", "--set", "11.backend=auto",
                   "--set", '11.model=["3", 0]', "--set", '11.vae=["3", 1]')
    assert proc.returncode == 5, (proc.stdout, proc.stderr, tiny_server.log_tail())
    assert "the run failed in node 11 (ShotAnimate)" in proc.stderr, proc.stderr
    # the keyframes rendered before the failure are kept
    keyframes = tiny_server.dirs["output"] / "moviedreamer" / "queue_cli_error" / "keyframes"
    assert len(list(keyframes.glob("*.png"))) == 3


def test_cli_says_when_no_server_answers(tmp_path, fresh_python):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli(fresh_python, str(TINY_API), "--server", f"http://127.0.0.1:{port}", timeout=60)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert f"no ComfyUI server at URL: http://127.0.0.1:{port}" in proc.stderr and "python main.py" in proc.stderr


def _long_render_started(server, fresh_python, project: str, **popen) -> tuple[subprocess.Popen, list[str]]:
    """The queue command following the tiny movie with a render of 10000 steps (still sampling a second later on a
    fast machine: 400 steps of the tiny model can finish within it), once the renderer has started; and the lines it
    printed until then."""
    proc = subprocess.Popen(fresh_python.argv("python -m moviedreamer_core.queue") + [str(TINY_API), "--server", server.url,
                             "--set", "9.steps=10000", "--project", project], cwd=str(PACK_DIR), env=fresh_python.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the renderer is sampling
        line = proc.stderr.readline()
        lines.append(line)
        if "IdentityDiffusionRender" in line or not line:
            break
    return proc, lines


def test_ctrl_c_takes_the_prompt_off_the_server(tiny_server, fresh_python):
    """Ctrl-C while following: the command interrupts its own prompt on the server and says how to resume."""
    import re
    import signal

    def terminal_sigint():
        # Ctrl-C reaches a command started from a terminal; a test run started in the background (``cmd &``
        # in a script) hands SIGINT down ignored, and Python then never raises KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc, lines = _long_render_started(tiny_server, fresh_python, "ctrl_c", preexec_fn=terminal_sigint)
    try:
        prompt_id = re.search(r"queued prompt (\S+)", "".join(lines)).group(1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, (out, err)
        assert f"cancelled: prompt {prompt_id}" in err and "a rerun resumes" in err
        entry = tiny_server.wait_history(prompt_id, timeout=120)
        assert entry["status"]["status_str"] == "error"
        assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"]), entry["status"]
    finally:  # on failure, leave no 10000-step render behind on the shared server
        if proc.poll() is None:
            proc.kill()
        if tiny_server.get("/queue").json()["queue_running"]:
            tiny_server.interrupt()
    assert tiny_server.get("/queue").json()["queue_running"] == []


@pytest.mark.parametrize("how", ["two Ctrl-C at once", "SIGTERM in the background"])
def test_ctrl_c_twice_or_sigterm_take_the_prompt_off_the_server(tiny_server, fresh_python, how):
    """Two Ctrl-C: a second one pressed right after the first cut the cancel's first request short: the interrupt was
    never sent, the command died in a traceback and the prompt went on rendering on the server (an audit). SIGTERM
    (``kill PID``, ``timeout``, a process manager): the command died at once, silently (exit 143), the prompt rendering
    on (an audit); it now cancels as Ctrl-C does, also when started in the background (SIGINT ignored). (SIGHUP, a
    dropped connection, leaves the render running: ``OneCtrlC``.)"""
    import re
    import signal

    twice = how == "two Ctrl-C at once"
    proc, lines = _long_render_started(tiny_server, fresh_python, "ctrl_c_twice" if twice else "killed_sigterm",
                                       preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                        signal.SIG_DFL if twice else signal.SIG_IGN))
    try:
        prompt_id = re.search(r"queued prompt (\S+)", "".join(lines)).group(1)
        time.sleep(1.0)
        if twice:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.002)
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 5 and f"cancelled: prompt {prompt_id}" in err and "Traceback" not in err, (
            proc.returncode, out, err)
        entry = tiny_server.wait_history(prompt_id, timeout=120)
        assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"]), entry["status"]
    finally:
        if proc.poll() is None:
            proc.kill()
        if tiny_server.get("/queue").json()["queue_running"]:
            tiny_server.interrupt()
    assert tiny_server.get("/queue").json()["queue_running"] == []


def test_a_server_killed_mid_run_is_named_with_what_to_do(tiny_server, fresh_python):
    """The queue command said only "lost the server ...: [Errno 104] Connection reset by peer" when the server was
    killed under it (an audit). It now says the server stopped answering and how to resume, exit status 5."""
    proc, lines = _long_render_started(tiny_server, fresh_python, "killed")
    try:
        tiny_server.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        tiny_server.restart()
    assert proc.returncode == 5, ("".join(lines), out, err)
    assert "error: lost the server while waiting for prompt" in err, err
    assert "The server stopped answering (it was stopped, killed or crashed" in err and "resumes from them" in err, err


TOY_SCRIPT = """title: README Program
characters:
  - {name: Ava, description: a girl, references: [0]}
shots:
  - {id: s1, scene: a sandy beach, action: Ava walks along the beach., characters: [Ava], camera: wide, duration: 1}
"""


def readme_example_script() -> str:
    """The script the README prints under "The script format" (its reference files are the user's: none here)."""
    import re

    return re.findall(r"```yaml\n(.*?)```", (PACK_DIR / "README.md").read_text(encoding="utf-8"), re.S)[0]


def test_readme_prompt_program_prints_the_answer_or_the_refusal(server, tmp_path, fresh_python):
    """The README's program that POSTs the API twin to ``/prompt``, saved as a file and run as printed (its server
    swapped for the test's) from a folder that holds the pack's ``workflows/`` and the user's ``my_script.yaml``."""
    from ..readme_blocks import readme_python_program

    program = readme_python_program("/prompt", server.url)
    (tmp_path / "workflows").symlink_to(PACK_DIR / "workflows", target_is_directory=True)
    (tmp_path / "my_program.py").write_text(program, encoding="utf-8")
    # refused: the README's own example script names reference photos the input folder lacks, and no model file is there
    (tmp_path / "my_script.yaml").write_text(readme_example_script(), encoding="utf-8")
    refused = fresh_python.run("python -I my_program.py", cwd=tmp_path, timeout=120)
    assert refused.returncode == 0 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    answer = json.loads(refused.stdout)
    assert answer["error"]["type"] == "prompt_outputs_failed_validation", answer
    script_errors = [e for e in answer["node_errors"]["3"]["errors"] if e["extra_info"].get("input_name") == "script"]
    assert script_errors and 'file "ava_front.png" not found' in script_errors[0]["details"], answer["node_errors"]["3"]
    assert "ckpt_name" in json.dumps(answer["node_errors"]["1"]), answer["node_errors"]
    # queued: the toy cinema's twin (its ScriptEncode is node 2) needs no model file
    (tmp_path / "my_program.py").write_text(program.replace("moviedreamer_movie_api.json", "moviedreamer_toycinema_api.json"),
                                            encoding="utf-8")
    (tmp_path / "my_script.yaml").write_text(TOY_SCRIPT, encoding="utf-8")
    queued = fresh_python.run("python -I my_program.py", cwd=tmp_path, timeout=120)
    assert queued.returncode == 0 and "Traceback" not in queued.stderr, queued.stderr[-3000:]
    prompt_id = ast.literal_eval(queued.stdout.strip())["prompt_id"]
    entry = server.wait_history(prompt_id, timeout=300)
    assert entry["status"].get("status_str") == "success", entry["status"]
