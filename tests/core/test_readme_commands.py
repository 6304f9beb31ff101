"""Every command the README prints, run as a user runs it: from the pack's folder, in a fresh interpreter that
imported nothing before the command (``tests/fresh_python.py``), with the README's own words plus the few
arguments that keep a test small and inside its temporary folder.

The first test reads the README and fails when it prints a program that no test runs this way, so a new command
cannot be documented untested. Commands that need the ComfyUI host run in the host tests named in ``RUN_BY``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moviedreamer_core.files import default_file_mode

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: Each program the README prints -> the test that runs it in a fresh interpreter (``file::function``).
RUN_BY = {
    "moviedreamer_core.script": "tests/core/test_readme_commands.py::test_script_schema_and_validate_commands",
    "moviedreamer_core.planner.train": "tests/core/test_readme_commands.py::test_planner_training_command_makes_its_output_folder",
    "moviedreamer_core.train": "tests/core/test_readme_commands.py::test_scale_training_commands",
    "accelerate launch -m moviedreamer_core.train": "tests/core/test_readme_commands.py::test_accelerate_launch_command",
    "torchrun -m moviedreamer_core.train": "tests/core/test_train_scale.py::test_two_processes_track_one_process",
    "moviedreamer_core.data": "tests/core/test_readme_commands.py::test_dataset_builder_command",
    "moviedreamer_core.queue": "tests/host/test_queue_server.py::test_cli_queues_the_tiny_movie_and_prints_progress_and_files",
    "cli/toycinema_demo.py": "tests/host/test_toycinema.py::test_demo_command_writes_the_movie_and_the_storyboard",
    "cli/toycinema_train.py": "tests/host/test_toycinema.py::test_retraining_command_writes_a_consistent_set_of_files",
    "cli/train_renderer.py": "tests/host/test_renderer_training.py::test_renderer_training_command_trains_on_a_checkpoint_the_host_loads",
    "benchmarks/toycinema.py": "tests/host/test_toycinema.py::test_benchmark_command_scores_fresh_films_and_ends_with_a_json_line",
    "benchmarks/identity_report_fewshot.py":
        "tests/host/test_identity_report.py::test_fewshot_benchmark_command_reports_both_plans_and_ends_with_a_json_line",
}
#: The README's install and test commands: CI runs them (``.ci/run``), a test does not.
NOT_PROGRAMS = ("pip", "pytest")
#: Each ``python`` block the README prints (a program a user saves and runs), by the route it posts to -> its test.
PYTHON_BLOCKS_RUN_BY = {
    "/prompt": "tests/host/test_queue_server.py::test_readme_prompt_program_prints_the_answer_or_the_refusal",
    "/distributed/queue":
        "tests/distributed/test_toy_movie.py::test_readme_distributed_queue_program_prints_the_answer_or_the_refusal",
}


def readme_commands() -> list[str]:
    """Every command line the README prints: lines of its ``bash`` blocks (continuations joined, comments cut)
    and inline code that starts with a command."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if re.match(r"(python|accelerate launch|torchrun)\b", line):
                found.append(line)
    found += [m.group(1) for m in re.finditer(r"`((?:python|accelerate launch|torchrun) [^`]+)`", text)]
    return found


def program_of(command: str):
    """``python cli/<program>.py ...`` -> ``cli/<program>.py``; ``python -m a.b ...`` -> ``a.b``; launchers keep their name."""
    words = command.split()
    launcher = "" if words[0] == "python" else ("accelerate launch" if words[0] == "accelerate" else words[0])
    if "-m" in words:
        module = words[words.index("-m") + 1]
        if module in NOT_PROGRAMS:
            return None
        return f"{launcher} -m {module}" if launcher else module
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return script


def test_every_program_the_readme_prints_is_run_by_a_test():
    programs = {program_of(c) for c in readme_commands()} - {None}
    assert {"cli/toycinema_demo.py", "moviedreamer_core.script"} <= programs, "README parsing is broken"
    untested = sorted(programs - set(RUN_BY))
    assert not untested, f"the README prints these programs but no test runs them in a fresh interpreter: {untested}"
    stale = sorted(set(RUN_BY) - programs)
    assert not stale, f"RUN_BY names programs the README no longer prints: {stale}"
    for program, test in RUN_BY.items():
        assert "fresh_python" in _test_body(test), f"{program}: {test} does not run it in a fresh interpreter"


def _test_body(test: str) -> str:
    """The source of the test function ``file::name`` (which must exist), up to the next top-level ``def``."""
    file, name = test.split("::")
    source = (ROOT / file).read_text(encoding="utf-8")
    assert re.search(rf"^def {name}\(", source, re.M), f"{test} does not exist"
    body = source[source.index(f"def {name}("):]
    return body[:body.find("\ndef ", 1) if "\ndef " in body[1:] else len(body)]


def test_every_python_program_the_readme_prints_is_run_by_a_test():
    """The README's ``python`` blocks (the programs that queue a workflow over HTTP) are run as printed too: the
    distributed one printed a traceback for every refused prompt (HTTP 500 from ComfyUI-Distributed) and no test ran it."""
    from ..readme_blocks import posts_to, readme_python_blocks

    routes = [posts_to(block) for block in readme_python_blocks()]
    assert routes, "README parsing is broken"
    assert sorted(routes) == sorted(PYTHON_BLOCKS_RUN_BY), f"README python blocks post to {routes}; tests: {sorted(PYTHON_BLOCKS_RUN_BY)}"
    for route, test in PYTHON_BLOCKS_RUN_BY.items():
        body = _test_body(test)
        assert "fresh_python" in body and f'readme_python_program("{route}"' in body, \
            f"{route}: {test} does not run the README's block in a fresh interpreter"


def assert_ordinary_file(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_mode & 0o777 == default_file_mode(), f"{path}: mode {oct(path.stat().st_mode & 0o777)}"


# ------------------------------------------------------------------------------------------ the commands


def test_script_schema_and_validate_commands(fresh_python, tmp_path):
    schema = fresh_python.run("python -m moviedreamer_core.script schema", timeout=120)
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout)["title"]
    script = tmp_path / "my_script.yaml"
    script.write_text("title: T\ncharacters: []\nshots:\n  - {id: 1, scene: a room, action: Nothing happens., duration: 2}\n")
    ok = fresh_python.run(f"python -m moviedreamer_core.script validate {script}", timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 1 shots, 1 keyframes"), (ok.stdout, ok.stderr)
    # a note (not a problem) is printed as the queue command prints it: it was left out here (found by an audit)
    script.write_text("title: T\ncharacters: [{name: Ava, description: d}, {name: Bo, description: d}]\n"
                      "shots:\n  - {id: 1, scene: a room, action: Ava hands Bo a lantern., duration: 2, characters: [Ava]}\n")
    noted = fresh_python.run(f"python -m moviedreamer_core.script validate {script}", timeout=120)
    assert noted.returncode == 0 and noted.stdout.startswith("ok: 1 shots"), (noted.stdout, noted.stderr)
    assert noted.stderr.startswith("note: shots[0].action: names Bo, who is not in this shot's characters"), noted.stderr
    script.write_text("title: T\nshots:\n  - {id: 1, scene: a room, action: x, duration: 0}\n")
    bad = fresh_python.run(f"python -m moviedreamer_core.script validate {script}", timeout=120)
    assert bad.returncode == 1 and "shots[0].duration" in bad.stderr, (bad.stdout, bad.stderr)


def test_the_readmes_example_script_through_the_readmes_validate_command_says_where_references_were_looked_up(
        fresh_python, tmp_path):
    """The README's example script, saved as ``my_script.yaml`` and checked with the README's command: its photos are
    the user's, so both files are reported missing "in the input folder", which did not say which folder that was
    (the script's own, not ComfyUI's ``input/``): the report now ends with the folder (found running the README)."""
    example = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[0]
    (tmp_path / "my_script.yaml").write_text(example, encoding="utf-8")
    proc = fresh_python.run(f"python -m moviedreamer_core.script validate {tmp_path / 'my_script.yaml'}", timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("2 problems in the script:\n"), proc.stderr
    assert 'characters[0].references[0]: file "ava_front.png" not found in the input folder' in proc.stderr, proc.stderr
    assert proc.stderr.endswith(f"reference files were looked up in {tmp_path} (the script's own folder; --input-dir "
                                "names ComfyUI's input/ folder)\n"), proc.stderr
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "ava_front.png").write_bytes(b"")  # found, but empty: not a problem of where
    given = fresh_python.run(f"python -m moviedreamer_core.script validate {tmp_path / 'my_script.yaml'} --input-dir "
                             f"{tmp_path / 'input'}", timeout=120)
    assert given.returncode == 1 and given.stderr.endswith(f"reference files were looked up in {tmp_path / 'input'}\n"), \
        given.stderr


def test_planner_training_command_makes_its_output_folder(fresh_python, synthetic_films, tmp_path):
    """The README's command with ``--steps 3``; ``--out`` names a folder that does not exist yet."""
    folder, _, _ = synthetic_films
    out = tmp_path / "models" / "moviedreamer" / "my_planner.safetensors"
    proc = fresh_python.run(f"python -m moviedreamer_core.planner.train --data {folder} --out {out} --config tiny --steps 2000",
                            "--steps", "3", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_ordinary_file(out)
    from moviedreamer_core.planner import load_planner

    assert load_planner(str(out)) is not None


def test_ctrl_c_stops_the_planner_training_command_saying_nothing_was_saved(fresh_python, synthetic_films, tmp_path):
    """Ctrl-C in the README's quick trainer printed a traceback and said nothing of the training (an audit): it exits
    130 saying that nothing was saved and which trainer keeps checkpoints."""
    import time

    folder, _, _ = synthetic_films
    out = tmp_path / "my_planner.safetensors"

    def training(proc):
        for line in proc.stdout:  # "600 movies, ... keyframes; ... M parameters": training starts
            if "M parameters" in line:
                break
        time.sleep(2.0)

    status, err = fresh_python.ctrl_c(f"python -m moviedreamer_core.planner.train --data {folder} --out {out} "
                                      "--config tiny --steps 1000000", training, cwd=ROOT)
    assert status == 130, err[-3000:]
    assert err.startswith("stopped: nothing saved") and "python -m moviedreamer_core.train planner" in err, err[-3000:]
    assert "Traceback" not in err and not out.exists()


def test_both_planner_trainers_name_a_missing_or_broken_dataset(fresh_python, tmp_path):
    """Without a dataset the README's command printed a traceback (``FileNotFoundError: my_dataset/index.json``,
    found by an audit) where the scale trainer printed an error: both now say what is wrong, with exit status 2."""
    out = tmp_path / "p.safetensors"
    spaces = {"text_space": {"encoder": "t", "dim": 8}, "identity_space": {"encoder": "i", "dim": 4},
              "token_space": {"source": "s", "K": 2, "D": 8}}
    broken = {"broken": {"movies": []}, "empty": {"movies": [], **spaces},  # an empty list: a torch.cat traceback
              "huge": {"movies": ["movies/a.safetensors"], **spaces, "text_space": {"encoder": "t", "dim": 10 ** 12}}}
    for name, index in broken.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.json").write_text(json.dumps(index))
    for data, words in ((tmp_path / "my_dataset", "no dataset at"), (tmp_path / "broken", "missing ['text_space'"),
                        (tmp_path / "empty", "movies is empty"),
                        (tmp_path / "huge", "text_space: a space's dim must be a whole number from 1 to 65,536")):
        small = fresh_python.run(f"python -m moviedreamer_core.planner.train --data {data} --out {out} --steps 2",
                                 timeout=300)
        assert small.returncode == 2 and small.stderr.startswith("error: --data: ") and words in small.stderr, small.stderr
        scale = fresh_python.run(f"python -m moviedreamer_core.train planner --config tiny data.path={data}",
                                 f"output.dir={tmp_path / 'run'}", timeout=300)
        assert scale.returncode == 2 and "data.path: " in scale.stderr and words in scale.stderr, scale.stderr
        assert "Traceback" not in small.stderr + scale.stderr and not out.exists()


def test_scale_training_commands(fresh_python, synthetic_films, tmp_path):
    folder, _, val = synthetic_films
    run = tmp_path / "not" / "yet" / "there"
    proc = fresh_python.run(f"python -m moviedreamer_core.train planner --config tiny data.path={folder}",
                            "train.steps=2", "checkpoint.every=0", "eval.every=0", f"output.dir={run}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_ordinary_file(run / "planner.safetensors")
    dry = fresh_python.run("python -m moviedreamer_core.train planner --config paper --dry-run --processes 16", timeout=300)
    assert dry.returncode == 0 and "M parameters" in dry.stdout, dry.stderr[-3000:]


def test_accelerate_launch_command(fresh_python, synthetic_films, tmp_path):
    """``accelerate launch ... -m moviedreamer_core.train`` as the README prints it, on the CPU. accelerate starts
    several CPU processes only through MPI's ``mpirun``, so here it is one process; the two-process run on the CPU
    is torchrun's (``test_train_scale.py``)."""
    folder, _, _ = synthetic_films
    run = tmp_path / "launched"
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.is_file():
        pytest.skip(f"accelerate's launcher is not installed beside {sys.executable}")
    argv = [str(launcher), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "moviedreamer_core.train", "planner", "--config", "tiny",
            f"data.path={folder}", "train.steps=2", "train.batch_size=4", "checkpoint.every=0", "eval.every=0",
            f"output.dir={run}"]
    proc = subprocess.run(argv, cwd=str(ROOT), env=fresh_python.env({"OMP_NUM_THREADS": "1"}), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "1 process(es)" in proc.stdout and "step 2/2" in proc.stdout, proc.stdout[-2000:]
    assert_ordinary_file(run / "planner.safetensors")


def _tiny_clip_vision_folder(folder: Path) -> Path:
    """A transformers ``CLIPVisionModelWithProjection`` folder, tiny and random (the README names a real one)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(str(folder))
    return folder


def test_dataset_builder_command(fresh_python, tmp_path):
    from moviedreamer_core.video_io import write_video

    videos, chars = tmp_path / "my_videos", tmp_path / "my_characters" / "Eileen"
    videos.mkdir()
    chars.mkdir(parents=True)
    frames = [np.full((96, 96, 3), colour, np.uint8) for colour in ((200, 40, 40), (40, 40, 200)) for _ in range(12)]
    write_video(str(videos / "film.mp4"), frames, 12)
    skdata = pytest.importorskip("skimage.data")
    Image.fromarray(skdata.astronaut()).save(chars / "eileen.png")
    clip_vision = _tiny_clip_vision_folder(tmp_path / "clip_vision_h_transformers")
    out = tmp_path / "my_dataset"
    proc = fresh_python.run(f"python -m moviedreamer_core.data build {videos}/ {out}/ --clip-vision {clip_vision}/ "
                            f"--text-encoder minilm --characters {chars.parent}/ --workers 2 --keyframes-per-shot 1",
                            "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = json.loads((out / "index.json").read_text())
    assert index["movies"] == ["movies/film.safetensors"], index
    assert index["text_space"]["dim"] == 384 and index["token_space"]["D"] == 16, index
    for name in ("index.json", "movies/film.safetensors", "movies/film.json"):
        assert_ordinary_file(out / name)


def readme_scripts() -> list[str]:
    """The script files the README runs as ``python <file>.py ...`` (not ``-m`` modules), each once."""
    scripts = []
    for command in readme_commands():
        words = command.split()
        if words[0] == "python" and len(words) > 1 and words[1].endswith(".py") and words[1] not in scripts:
            scripts.append(words[1])
    return scripts


def test_readme_scripts_are_found():
    assert {"cli/toycinema_demo.py", "cli/toycinema_train.py", "cli/train_renderer.py",
            "benchmarks/toycinema.py", "benchmarks/identity_report_fewshot.py"} <= set(readme_scripts())


@pytest.mark.parametrize("script", readme_scripts())
def test_program_help_starts_in_a_fresh_interpreter(fresh_python, tmp_path, script):
    """Each program the README runs as a script starts from the pack's folder in a fresh interpreter (its folder first
    on ``sys.path``), and under ``python -I`` (isolated mode: its folder not on ``sys.path``), which must find its
    own helpers anyway, from the pack's folder as the README prints it and from any other folder."""
    runs = [("python", None, script), ("python -I", None, script), ("python -I", tmp_path, str(ROOT / script))]
    for python, cwd, path in runs:
        proc = fresh_python.run(f"{python} {path} --help", cwd=cwd, timeout=120)
        assert proc.returncode == 0, f"{python} {path} --help from {cwd or ROOT}: {proc.stderr[-3000:]}"
        assert "usage:" in proc.stdout


def readme_test_commands() -> list[str]:
    """The two command lines of the README's "Tests" section (install, run)."""
    section = README.read_text(encoding="utf-8").split("\n## Tests\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readmes_two_commands():
    """``.ci/run`` is what CI runs, the README is what a user runs: the same two commands (CI only quieter)."""
    quiet = {"--quiet", "--silent"}
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip().startswith(("python ", "npm "))]
    readme = readme_test_commands()
    assert len(readme) == 2 and readme[0].startswith("python -m pip install") and readme[1] == "python -m pytest", readme
    assert [[w for w in line.split() if w not in quiet] for line in ci] == [line.split() for line in readme], (ci, readme)
    assert " -e . " in f" {readme[0]} ", "the install command no longer installs the pack (python -I -m ... needs it)"


def test_installed_pack_runs_its_module_commands_from_any_folder_in_isolated_mode(tmp_path):
    """After the README's install (``pip install -e .``; here without its dependencies and offline), ``python -I -m
    moviedreamer_core....`` works from a folder that is not the pack's, and the install exposes ``moviedreamer_core``
    alone: the pack's ``nodes/`` must never shadow ComfyUI's ``nodes.py``, nor ``cli/`` or ``tests/`` anything else."""
    from tests.fresh_python import FreshPython

    python = FreshPython(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "my_script.yaml"
    script.write_text("title: T\ncharacters: []\nshots:\n  - {id: 1, scene: a room, action: Nothing happens., duration: 2}\n")
    before = python.run(f"python -I -m moviedreamer_core.script validate {script}", cwd=elsewhere, timeout=120)
    assert before.returncode != 0 and "No module named" in before.stderr, "the test venv already finds the pack"
    install = python.run(["python", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(ROOT)],
                         cwd=elsewhere, timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    ok = python.run(f"python -I -m moviedreamer_core.script validate {script}", cwd=elsewhere, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 1 shots, 1 keyframes"), (ok.stdout, ok.stderr)
    schema = python.run("python -I -m moviedreamer_core.script schema", cwd=elsewhere, timeout=120)
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"], schema.stderr  # data files found in place
    found = python.run(["python", "-I", "-c", "import moviedreamer_core, sys; print(moviedreamer_core.__file__)"],
                       cwd=elsewhere, timeout=120)
    assert found.stdout.strip() == str(ROOT / "moviedreamer_core" / "__init__.py"), found
    for name in ("nodes", "cli", "tests", "benchmarks"):
        proc = python.run(["python", "-I", "-c", f"import {name}"], cwd=elsewhere, timeout=120)
        assert proc.returncode != 0 and f"No module named '{name}'" in proc.stderr, f"the install exposes {name}/"
