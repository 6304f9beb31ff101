"""The programs' numbers are checked where they are parsed: a bad count or seed is an argparse error naming the flag
(exit code 2), never a traceback from numpy or torch, nor the host's refusal of a whole workflow.

The programs of ``cli/`` and ``benchmarks/`` run as a user types them, in a fresh interpreter, without a ComfyUI
host (they parse their arguments before they look for one); the ``python -m`` programs of ``moviedreamer_core``
through their ``main`` in this process.
"""

from __future__ import annotations

import pytest

#: (command, what stderr must say)
BAD_ARGUMENTS = [
    ("python cli/toycinema_demo.py --film-seed -1", "argument --film-seed: must be at least 0, got -1"),
    ("python cli/toycinema_demo.py --seed 18446744073709551616", "argument --seed: must be at most 18,446,744,073,709,551,615"),
    ("python cli/toycinema_demo.py --film-seed 3 --shots 0", "argument --shots: must be at least 1, got 0"),
    ("python cli/toycinema_demo.py --film-seed 3 --shots 6000", "argument --shots: must be at most 1,920 (a toy story that long"),
    # 5,000 (the script's shot limit) was accepted, and the story of about 16,500 s refused by ScriptEncode afterwards
    ("python cli/toycinema_demo.py --film-seed 3 --shots 5000", "argument --shots: must be at most 1,920"),
    ("python cli/toycinema_demo.py --shots 4", "--shots sets the length of a --film-seed story"),
    ("python cli/toycinema_demo.py --threads 0", "argument --threads: must be at least 1, got 0"),
    ("python cli/toycinema_demo.py --script no_such_script.yaml", "--script: no such file: no_such_script.yaml"),
    ("python cli/toycinema_demo.py --project ' '", "--project must name the movie project"),
    ("python cli/toycinema_train.py --films 0", "argument --films: must be at least 1, got 0"),
    ("python cli/toycinema_train.py --seed -1", "argument --seed: must be at least 0, got -1"),
    ("python cli/toycinema_train.py --stages ,", "argument --stages: no stage given; choose from probe, identity"),
    ("python cli/toycinema_train.py --stages planner,bogus", "argument --stages: unknown stage(s) ['bogus']"),
    ("python cli/toycinema_train.py --out README.md", "argument --out: README.md is a file, not a folder"),
    ("python cli/toycinema_train.py --threads 0", "argument --threads: must be at least 1, got 0"),
    ("python cli/toycinema_train.py --figure-weight nan", "argument --figure-weight: must be a number from 0 to 1000, got nan"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --learning-rate nan",
     "argument --learning-rate: must be a number from 1e-07 to 1, got nan"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --batch-size 1000",
     "argument --batch-size: must be at most 256, got 1000"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --size 0x0",
     "argument --size: width must be a multiple of 8 from 16 to 8192, got 0"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --size 1024x577",
     "argument --size: height must be a multiple of 8 from 16 to 8192, got 577"),
    ("python cli/train_renderer.py --checkpoint c --clip-vision v --images . --size 1024",
     "argument --size: must be WIDTHxHEIGHT in pixels (e.g. 1024x576), got '1024'"),
    ("python benchmarks/toycinema.py --films-seed -7 --films 1", "--films-seed must be dev, test or an integer of at least 0, got -7"),
    ("python benchmarks/toycinema.py --films 100000", "argument --films: must be at most 1,000"),
    ("python benchmarks/toycinema.py --steps 0", "argument --steps: must be at least 1, got 0"),
    ("python benchmarks/toycinema.py --threads 0", "argument --threads: must be at least 1, got 0"),
    ("python benchmarks/toycinema.py --cfg nan", "argument --cfg: must be a number from 0 to 100, got nan"),
    ("python benchmarks/toycinema.py --json no_such_folder/figures.json", "argument --json: no_such_folder/figures.json: the folder"),
    ("python benchmarks/toycinema.py --json benchmarks", "argument --json: benchmarks is a folder; give a file name"),
    ("python benchmarks/identity_report_fewshot.py --train-films 0", "argument --train-films: must be at least 1, got 0"),
    ("python benchmarks/identity_report_fewshot.py --threads 2000", "argument --threads: must be at most 1,024, got 2000"),
    ("python benchmarks/identity_report_fewshot.py --films-seed -2", "--films-seed must be dev, test or an integer of at least 0"),
    ("python benchmarks/identity_report_fewshot.py --films x", "argument --films: must be a whole number, got 'x'"),
    # the developers' benchmarks (README, Benchmarks): a negative count was a traceback at some later line
    ("python benchmarks/animate_memory.py --fps 0", "argument --fps: must be a number of frames per second more than 0 and at most 1000, got 0"),
    ("python benchmarks/animate_memory.py --shots 3 -1", "argument --shots: must be at least 1, got -1"),
    ("python benchmarks/animate_overhead.py --frames 0", "argument --frames: must be at least 1, got 0"),
    ("python benchmarks/decoder_attention.py --threads 0", "argument --threads: must be at least 1, got 0"),
    ("python benchmarks/distributed_toy.py --seed -1", "argument --seed: must be at least 0, got -1"),
    ("python benchmarks/fingerprint_cost.py --repeats 0", "argument --repeats: must be at least 1, got 0"),
    ("python benchmarks/manifest_updates.py --sizes 50 -5", "argument --sizes: must be at least 1, got -5"),
    ("python benchmarks/planner_train_step.py --keyframes 0", "argument --keyframes: must be at least 1, got 0"),
    ("python benchmarks/planner_window.py --window 0", "argument --window: must be at least 1, got 0"),
    ("python benchmarks/render_memory.py --counts -50", "argument --counts: must be at least 1, got -50"),
    ("python benchmarks/render_overhead.py --steps 0", "argument --steps: must be at least 1, got 0"),
    ("python benchmarks/script_encode.py --photos 0", "argument --photos: must be at least 1, got 0"),
    ("python benchmarks/sentence_encoding.py --films 0", "argument --films: must be at least 1, got 0"),
    ("python benchmarks/toycinema_demo_threads.py --repeats 0", "argument --repeats: must be at least 1, got 0"),
]


#: The ``python -m`` programs of ``moviedreamer_core``, called in this process (a fresh interpreter would spend five
#: seconds importing torch for each): (module, arguments, what stderr must say).
BAD_MODULE_ARGUMENTS = [
    ("moviedreamer_core.data.__main__", "build videos out --clip-vision c --text-encoder minilm --workers 0",
     "argument --workers: must be at least 1, got 0"),
    ("moviedreamer_core.data.__main__", "build videos out --clip-vision c --text-encoder minilm --shot-threshold nan",
     "argument --shot-threshold: must be a number more than 0 and at most 255, got nan"),
    ("moviedreamer_core.data.__main__", "build no_such_folder out --clip-vision c --text-encoder minilm",
     "videos: no_such_folder is not a folder"),
    ("moviedreamer_core.planner.train", "--data d --out o.safetensors --steps 0", "argument --steps: must be at least 1, got 0"),
    ("moviedreamer_core.planner.train", "--data d --out o.safetensors --lr nan",
     "argument --lr: must be a number more than 0 and at most 1, got nan"),
    ("moviedreamer_core.train.__main__", "planner --config tiny --dry-run --processes 0",
     "argument --processes: must be at least 1, got 0"),
    ("moviedreamer_core.train.__main__", "planner --config tiny --dry-run planner.hidden_size=-1",
     "planner config hidden_size must be a whole number from 1 to 65,536, got -1"),
    ("moviedreamer_core.train.__main__", "planner --config tiny --dry-run train.lr=0", "train.lr must be a positive number, got 0"),
    ("moviedreamer_core.train.__main__", "planner --config tiny --dry-run train.seed=-1",
     "train.seed must be a whole number from 0 to 18446744073709551615, got -1"),
    ("moviedreamer_core.queue.cli", "w.json --timeout -1", "argument --timeout: must be a number of seconds more than 0"),
    ("moviedreamer_core.script.__main__", "validate s.yaml --input-dir no_such_folder", "--input-dir: no_such_folder is not a folder"),
]


@pytest.mark.parametrize("command,message", BAD_ARGUMENTS, ids=[c for c, _ in BAD_ARGUMENTS])
def test_a_bad_number_is_refused_by_its_flag_before_any_work(command, message, fresh_python):
    proc = fresh_python.run(command, timeout=120, env={"COMFYUI_PATH": "/nonexistent"})  # refused before a host is looked for
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module,args,message", BAD_MODULE_ARGUMENTS, ids=[f"{m} {a}" for m, a, _ in BAD_MODULE_ARGUMENTS])
def test_a_bad_number_given_to_a_module_program_is_refused_by_its_flag(module, args, message, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)  # relative folders in the arguments exist nowhere
    try:
        code = importlib.import_module(module).main(args.split())
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2, capsys.readouterr().err[-2000:]
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    ("--clip-vision nothere/ --text-encoder minilm", "--clip-vision 'nothere/': no such folder"),
    ("--clip-vision clip --text-encoder nothere", "--text-encoder 'nothere': no such folder"),
    ("--clip-vision clip --text-encoder no_such_module:make", "--text-encoder 'no_such_module:make': no module 'no_such_module'"),
    ("--clip-vision clip --text-encoder minilm --characters nothere/", "--characters 'nothere/': no such folder"),
    ("--clip-vision clip --text-encoder minilm --characters nothere/ --workers 2", "--characters 'nothere/': no such folder"),
    ("--clip-vision clip --text-encoder minilm --captioner blip", "--captioner 'blip': expected module:function"),
    ("--clip-vision clip --text-encoder minilm --face-embedder insightface", "--face-embedder 'insightface': expected 'dlib' or"),
])
def test_the_dataset_builder_names_an_option_it_cannot_use_before_building(args, message, capsys, tmp_path, monkeypatch):
    """A missing --characters or --clip-vision folder ended the build in a traceback, with --workers 2 in a
    BrokenProcessPool that did not say why (an audit). Refused as a usage error naming the option; nothing made."""
    from moviedreamer_core.data.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "film.mp4").write_bytes(b"not read")
    (tmp_path / "clip").mkdir()
    with pytest.raises(SystemExit) as refused:
        main(["build", "videos", "out", *args.split()])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_ctrl_c_stops_a_training_after_its_step_but_lets_the_last_step_finish_the_training():
    """``cli/ctrl_c.CtrlC`` (the training commands): after a Ctrl-C, the next whole step stops the run with its state
    kept (``StoppedByUser``), except when that step was the last: the training then finishes and saves its file
    rather than leaving a state file that a second run would only turn into it."""
    import os
    import signal

    from cli.ctrl_c import CtrlC, StoppedByUser

    for step, total, stops in ((2, 3, True), (3, 3, False), (2, None, True)):
        with CtrlC() as ctrl_c:
            ctrl_c.after_step(1, total)  # training has begun: the first Ctrl-C only asks
            os.kill(os.getpid(), signal.SIGINT)
            if stops:
                with pytest.raises(StoppedByUser) as stopped:
                    ctrl_c.after_step(step, total)
                assert stopped.value.step == step
            else:
                ctrl_c.after_step(step, total)


def test_a_comfyui_folder_the_user_names_is_used_or_refused_never_passed_over(fresh_python, tmp_path):
    """``--comfyui`` (or ``$COMFYUI_PATH``) naming a folder that is not ComfyUI used to fall through to the next
    candidate: on a machine with two ComfyUIs the command ran the other one without a word."""
    other = tmp_path / "OtherComfyUI"
    (other / "comfy").mkdir(parents=True)
    (other / "comfy" / "model_management.py").write_text("")  # enough to be found as a ComfyUI folder
    proc = fresh_python.run(f"python cli/toycinema_demo.py --comfyui {tmp_path / 'typo'}", timeout=120,
                            env={"COMFYUI_PATH": str(other)})
    assert proc.returncode == 1 and f"--comfyui {tmp_path / 'typo'}: not a ComfyUI folder" in proc.stderr, proc.stderr[-2000:]
    proc = fresh_python.run("python cli/toycinema_train.py --stages probe", timeout=120,
                            env={"COMFYUI_PATH": str(tmp_path / "typo")})
    assert proc.returncode == 1 and f"COMFYUI_PATH {tmp_path / 'typo'}: not a ComfyUI folder" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
