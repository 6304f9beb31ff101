"""``python -m moviedreamer_core.queue`` without a host: script injection, overrides, local script validation,
the server's refusals and errors made readable, output paths, the websocket client, exit codes."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from moviedreamer_core import queue as q

ROOT = Path(__file__).resolve().parents[2]
MOVIE_API = ROOT / "workflows" / "api" / "moviedreamer_movie_api.json"
TINY_API = ROOT / "tests" / "workflows" / "moviedreamer_movie_tiny_api.json"
FIXTURES = Path(__file__).parent / "fixtures"


def movie_prompt() -> dict:
    return q.load_workflow(str(MOVIE_API))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moviedreamer_core.queue", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)


# ------------------------------------------------------------------------------------------ the workflow


def test_script_goes_into_every_script_encode_node_and_script_file_is_reset():
    prompt = movie_prompt()
    prompt["99"] = json.loads(json.dumps(prompt["3"]))
    prompt["99"]["inputs"]["script_file"] = "stories/old.yaml"
    text = (FIXTURES / "lighthouse.yaml").read_text()
    ids = q.inject_script(prompt, text)
    assert ids == ["3", "99"]
    for nid in ids:
        assert prompt[nid]["inputs"]["script"] == text
        assert prompt[nid]["inputs"]["script_file"] == "(none: use the text above)"
        assert prompt[nid]["inputs"]["clip"] == ["1", 1], "links are untouched"
    assert q.check_scripts(prompt) == 2


def test_a_workflow_without_script_encode_cannot_take_a_script():
    with pytest.raises(q.UsageError, match="no ScriptEncode node"):
        q.inject_script({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}}}, "title: x")


def test_overrides_and_project_name():
    prompt = movie_prompt()
    q.apply_overrides(prompt, ["8.steps=30", "8.cfg=4.5", "8.sampler_name=dpmpp_2m", "16.model=[\"10\", 0]",
                               "8.negative_prompt=ugly, blurry", "5.few_shot_references=false"])
    render = prompt["8"]["inputs"]
    assert (render["steps"], render["cfg"], render["sampler_name"]) == (30, 4.5, "dpmpp_2m")
    assert render["negative_prompt"] == "ugly, blurry" and prompt["16"]["inputs"]["model"] == ["10", 0]
    assert prompt["5"]["inputs"]["few_shot_references"] is False
    changed = q.apply_project(prompt, "take_2")
    assert sorted(changed) == ["16", "8"]
    assert prompt["8"]["inputs"]["project_name"] == prompt["16"]["inputs"]["project_name"] == "take_2"


@pytest.mark.parametrize("bad,message", [("8steps=3", "expected NODE_ID.input=value"), ("8.steps", "expected NODE_ID.input=value"),
                                          ("77.steps=3", "no node '77'"), (".steps=3", "expected NODE_ID.input=value")])
def test_bad_overrides_are_usage_errors(bad, message):
    with pytest.raises(q.UsageError, match=message):
        q.apply_overrides(movie_prompt(), [bad])


def test_a_broken_script_is_reported_with_every_problem_before_queueing():
    prompt = movie_prompt()
    q.inject_script(prompt, "title: X\ncharacters: [{name: Ava, description: d}]\nshots:\n"
                    "  - {id: s1, scene: a, action: b, duration: 0, characters: [Mira]}\n")
    with pytest.raises(q.UsageError) as e:
        q.check_scripts(prompt)
    text = str(e.value)
    assert text.startswith("node 3 (ScriptEncode): 2 problems in the script:")
    assert "shots[0].duration" in text and 'unknown character "Mira"' in text


def test_reference_files_are_checked_only_with_an_input_folder(tmp_path):
    prompt = movie_prompt()  # its script names ava_reference.png and friends
    assert q.check_scripts(prompt) == 1
    with pytest.raises(q.UsageError, match='file "ava_reference.png" not found in the input folder'):
        q.check_scripts(prompt, str(tmp_path))


def test_ui_format_and_non_workflows_are_refused(tmp_path):
    with pytest.raises(q.UsageError, match="UI-format workflow"):
        q.load_workflow(str(ROOT / "workflows" / "moviedreamer_movie.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\"1\": {\"inputs\": {}}}")
    with pytest.raises(q.UsageError, match="not an API-format workflow") as refused:
        q.load_workflow(str(bad))
    assert str(refused.value).endswith('(expected {node_id: {"class_type": ..., "inputs": {...}}})')  # braces that pair
    bad.write_text("{nope")
    with pytest.raises(q.UsageError, match="not valid JSON"):
        q.load_workflow(str(bad))
    with pytest.raises(q.UsageError, match="the workflow .* cannot be read"):
        q.load_workflow(str(tmp_path / "missing.json"))
    bad.write_text('{"1": {"class_type": "X", "inputs": {"seed": ' + "9" * 5000 + "}}}")  # a traceback (audit)
    with pytest.raises(q.UsageError, match="the workflow .* cannot be read: .*digits"):
        q.load_workflow(str(bad))


#: Workflow files made to be refused -> the words after "the workflow <path> " / "<path> " (``load_workflow``).
HOSTILE_WORKFLOWS = {
    "truncated": ('{"1": {"class_type": "ScriptEncode", "inputs": {"scr', "the workflow {} is not valid JSON (line 1"),
    "deep": ("[" * 100_000 + "]" * 100_000, "the workflow {} is nested too deeply to be a workflow"),
    "deep in a node": ('{"1": {"class_type": "X", "inputs": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}}",
                       "the workflow {} is nested too deeply to be a workflow"),
    "a list": ("[]", "{} is not an API-format workflow"),
    "a node that is text": ('{"1": "ScriptEncode"}', "{} is not an API-format workflow"),
    "inputs that are a list": ('{"1": {"class_type": "X", "inputs": []}}', "{} is not an API-format workflow"),
}


@pytest.mark.parametrize("name", list(HOSTILE_WORKFLOWS))
def test_a_damaged_or_wrong_shaped_workflow_is_a_usage_error_naming_it(tmp_path, name):
    """``load_workflow`` parses with ``text_files.loads_json``: JSON nested past Python's parser is a ``UsageError``
    with its own words (before: its own ``except RecursionError``), like a file cut short or of the wrong shape."""
    text, words = HOSTILE_WORKFLOWS[name]
    path = tmp_path / "workflow.json"
    path.write_text(text)
    with pytest.raises(q.UsageError) as refused:
        q.load_workflow(str(path))
    assert str(refused.value).startswith(words.format(path)), str(refused.value)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_workflow_that_is_dev_zero_is_refused_for_its_size(tmp_path):
    """A device linked (or given) as the workflow is read no further than ``MAX_WORKFLOW_BYTES`` + 1 bytes."""
    from moviedreamer_core.queue.workflow import MAX_WORKFLOW_BYTES

    path = tmp_path / "workflow.json"
    path.symlink_to("/dev/zero")
    with pytest.raises(q.UsageError) as refused:
        q.load_workflow(str(path))
    assert str(refused.value) == f"the workflow {path} is larger than the limit of {MAX_WORKFLOW_BYTES:,} bytes"


def test_a_set_value_nested_past_the_parser_is_refused_and_others_are_json_or_text():
    assert q.parse_value("30") == 30 and q.parse_value('["4", 0]') == ["4", 0] and q.parse_value("a cat") == "a cat"
    assert q.parse_value("{nope") == "{nope"
    with pytest.raises(q.UsageError, match=r"is nested too deeply to be an input's value$"):
        q.parse_value("[" * 100_000 + "]" * 100_000)


# ------------------------------------------------------------------------------------------ messages

#: a 400 answer of ComfyUI 0.3.x to POST /prompt, as the host builds it
REFUSAL = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "",
              "extra_info": {}},
    "node_errors": {
        "1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                          "details": "ckpt_name: 'sd_xl_base_1.0.safetensors' not in ['v1-5-pruned-emaonly.safetensors']",
                          "extra_info": {"input_name": "ckpt_name",
                                         "input_config": [["v1-5-pruned-emaonly.safetensors"], {"tooltip": "..."}],
                                         "received_value": "sd_xl_base_1.0.safetensors"}}],
              "dependent_outputs": ["9", "15"], "class_type": "CheckpointLoaderSimple"},
        "13": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                           "details": "clip_name: 'clip_vision_h.safetensors' not in (list of length 31)",
                           "extra_info": {"input_name": "clip_name", "input_config": None,
                                          "received_value": "clip_vision_h.safetensors"}}],
               "dependent_outputs": ["15"], "class_type": "CLIPVisionLoader"},
        "3": {"errors": [{"type": "custom_validation_failed", "message": "Failed to validate prompt for output 9",
                          "details": "script, 1 problem in the script:\n  shots[0].duration: must be a positive number",
                          "extra_info": {"input_name": "script"}}],
              "dependent_outputs": ["9"], "class_type": "ScriptEncode"},
        "8": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1", "details": "steps",
                          "extra_info": {"input_name": "steps", "input_config": ["INT", {"min": 1}], "received_value": 0}},
                         {"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                          "details": "renderer, received_type(CLIP) mismatch input_type(MD_RENDERER)",
                          "extra_info": {"input_name": "renderer"}}],
              "dependent_outputs": ["9"], "class_type": "IdentityDiffusionRender"},
    },
}


def test_a_report_is_listed_once_and_the_inputs_pointing_to_it_are_left_out():
    """ScriptEncode spells a refused script's report out under one input and points there from the others (the host
    repeats a node's refusal once per input): the refusal lists the report once and no pointer to it; a pointer to
    an input the node does not list is kept."""
    pointer = {"type": "custom_validation_failed", "message": "Custom validation failed for node"}
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
            "node_errors": {"2": {"class_type": "ScriptEncode", "errors": [
                {**pointer, "details": "script - 1 problem in the script:\n  script: expected a mapping",
                 "extra_info": {"input_name": "script"}},
                *[{**pointer, "details": f"{name} - see the problems listed under script", "extra_info": {"input_name": name}}
                  for name in ("script_file", "images", "text_encoder")]]},
                "5": {"class_type": "ScriptEncode", "errors": [
                    {**pointer, "details": "images - see the problems listed under script", "extra_info": {"input_name": "images"}}]}}}
    text = q.format_refusal(body, refused="the toy workflow was refused")
    assert text.splitlines() == ["the toy workflow was refused: Prompt outputs failed validation",
                                 "  node 2 (ScriptEncode): 1 problem in the script:", "    script: expected a mapping",
                                 "  node 5 (ScriptEncode): see the problems listed under script"], text


def test_a_validation_refusal_reads_as_one_line_per_node_error():
    text = q.format_refusal(REFUSAL, movie_prompt())
    lines = text.splitlines()
    assert lines[0] == "the server refused the prompt: Prompt outputs failed validation"
    assert lines[1] == ('  node 1 (CheckpointLoaderSimple) input ckpt_name: model file "sd_xl_base_1.0.safetensors" not found: '
                        "put it in models/checkpoints/ on the server (or a folder extra_model_paths.yaml adds); the server has: "
                        "v1-5-pruned-emaonly.safetensors")
    assert lines[2].startswith("  node 3 (ScriptEncode) input script: Failed to validate prompt for output 9: script, 1 problem")
    assert lines[3] == "    shots[0].duration: must be a positive number"
    assert lines[4] == "  node 8 (IdentityDiffusionRender) input steps: Value 0 smaller than min of 1"
    assert lines[5] == ("  node 8 (IdentityDiffusionRender) input renderer: Return type mismatch between linked nodes: "
                        "renderer, received_type(CLIP) mismatch input_type(MD_RENDERER)")
    assert lines[6] == ('  node 13 (CLIPVisionLoader) input clip_name: model file "clip_vision_h.safetensors" not found: '
                        "put it in models/clip_vision/ on the server (or a folder extra_model_paths.yaml adds)")
    assert len(lines) == 7


@pytest.mark.parametrize("cls,name,folder", [("CheckpointLoaderSimple", "ckpt_name", "checkpoints"),
                                             ("UNETLoader", "unet_name", "diffusion_models"), ("VAELoader", "vae_name", "vae"),
                                             ("CLIPLoader", "clip_name", "text_encoders"),
                                             ("CLIPVisionLoader", "clip_name", "clip_vision"),
                                             ("MovieDreamerPlannerLoader", "planner_name", "moviedreamer"),
                                             ("LoraLoaderModelOnly", "lora_name", "loras")])
def test_missing_model_files_name_their_folder(cls, name, folder):
    assert q.model_folder(cls, name) == folder


def test_other_refusals_and_unreadable_bodies():
    assert q.format_refusal({"error": {"type": "missing_node_type", "message": "Node 'Foo' not found",
                                       "details": "Node ID '#4'"}, "node_errors": {}}) == \
        "the server refused the prompt: Node 'Foo' not found: Node ID '#4'"
    assert q.format_refusal("<html>500</html>") == "the server refused the prompt: <html>500</html>"
    ipa = {"type": "value_not_in_list", "message": "Value not in list", "details": "",
           "extra_info": {"input_name": "renderer_name", "received_value": "ipadapter/ip-adapter_sd15.safetensors",
                          "input_config": ["COMBO", {"options": ["tiny.safetensors", "ipadapter/ip-adapter_sdxl.safetensors"]}]}}
    assert q.format_node_error("7", "MovieDreamerRendererLoader", ipa) == (
        'node 7 (MovieDreamerRendererLoader) input renderer_name: model file "ip-adapter_sd15.safetensors" not found: put it '
        "in models/ipadapter/ on the server (or a folder extra_model_paths.yaml adds); the server has: ip-adapter_sdxl.safetensors")
    # each folder lists its own files: the renderer loader's one choice holds both (a README audit found them mixed)
    mine = {**ipa, "extra_info": {**ipa["extra_info"], "received_value": "mine.safetensors"}}
    assert q.format_node_error("7", "MovieDreamerRendererLoader", mine).endswith(
        "put it in models/moviedreamer/ on the server (or a folder extra_model_paths.yaml adds); the server has: tiny.safetensors")
    only_mine = {**ipa, "extra_info": {**ipa["extra_info"], "input_config": ["COMBO", {"options": ["tiny.safetensors"]}]}}
    assert q.format_node_error("7", "MovieDreamerRendererLoader", only_mine).endswith("; the server has none there")


def test_choices_are_checked_against_object_info_before_queueing():
    prompt = q.load_workflow(str(TINY_API))
    info = {
        "MovieDreamerRendererLoader": {"input": {"required": {"renderer_name": ["COMBO", {"options": ["other.safetensors"]}]}}},
        "ScriptEncode": {"input": {"required": {"face_embedder": ["COMBO", {"options": ["dlib", "clip_vision_crop"]}],
                                                "script_file": ["COMBO", {"options": ["(none: use the text above)"]}],
                                                "clip": ["CLIP", {}]}}},
        "LoadImage": {"input": {"required": {"image": [[], {}]}}},
    }
    errors = q.check_choices(prompt, info)
    assert list(errors) == ["8"]
    line = q.format_node_error("8", "MovieDreamerRendererLoader", errors["8"]["errors"][0])
    assert 'model file "tiny_renderer.safetensors" not found: put it in models/moviedreamer/' in line
    assert line.endswith("the server has: other.safetensors")
    prompt["8"]["inputs"]["renderer_name"] = "other.safetensors"
    prompt["20"] = {"class_type": "LoadImage", "inputs": {"image": "x.png [output]"}}
    assert q.check_choices(prompt, info) == {}


def test_execution_errors_name_the_node_and_a_missing_model_folder():
    text = q.format_execution_error({"node_id": "8", "node_type": "MovieDreamerRendererLoader",
                                     "exception_type": "FileNotFoundError",
                                     "exception_message": "Model in folder 'moviedreamer' with filename 'x.safetensors' not found."})
    assert text.splitlines() == [
        "the run failed in node 8 (MovieDreamerRendererLoader): FileNotFoundError: Model in folder 'moviedreamer' with "
        "filename 'x.safetensors' not found.",
        '  model file "x.safetensors" is missing: put it in models/moviedreamer/ on the server']
    # the host names a pack's exception with the folder it loaded the pack from: only the class is shown
    text = q.format_execution_error({"node_id": "2", "node_type": "ScriptEncode", "exception_message": "1 problem",
                                     "exception_type": "/home/me/ComfyUI/custom_nodes/ComfyUI-MovieDreamer."
                                                       "moviedreamer_core.script.problems.ScriptError"})
    assert text == "the run failed in node 2 (ScriptEncode): ScriptError: 1 problem"


def test_output_files_and_texts_from_a_history_entry(tmp_path):
    entry = {"outputs": {
        "10": {"images": [{"filename": "kf_00001_.png", "subfolder": "moviedreamer", "type": "output"},
                          {"filename": "kf_00002_.png", "subfolder": "", "type": "output"}]},
        "12": {"images": [{"filename": "p_00001_.png", "subfolder": "", "type": "temp"}]},
        "11": {"text": ["38 frames (2.0 s) in 2 shots, 2 made this run: /srv/out/moviedreamer/The Keepers/The Keepers.mp4"]},
        "2": {"gifs": [{"filename": "anim.mp4", "subfolder": "video", "type": "output", "format": "video/h264-mp4"}]},
        "4": {"text": ["3 keyframes in /srv/out/moviedreamer/x"]},
    }, "status": {"status_str": "success", "completed": True, "messages": []}}
    # a Preview Image's copy in the server's temp folder is no file of the run (gone when the server starts again)
    assert q.output_files(entry) == ["output/video/anim.mp4", "output/moviedreamer/kf_00001_.png", "output/kf_00002_.png",
                                     "/srv/out/moviedreamer/The Keepers/The Keepers.mp4"]
    absolute = q.output_files(entry, str(tmp_path))
    assert absolute[0] == str(tmp_path / "video" / "anim.mp4") and absolute[1] == str(tmp_path / "moviedreamer" / "kf_00001_.png")
    texts = q.output_texts(entry, {"11": {"class_type": "ShotAnimate", "inputs": {}}})
    assert texts[-1].startswith("# node 11 ShotAnimate: 38 frames")
    assert q.history_error(entry) is None and not q.history_interrupted(entry)


# ------------------------------------------------------------------------------------------ exit codes


def test_server_down_is_exit_3_with_advice(capsys):
    port = closed_port()
    assert q.main([str(TINY_API), "--server", f"http://127.0.0.1:{port}"]) == 3
    err = capsys.readouterr().err
    assert f"no ComfyUI server at URL: http://127.0.0.1:{port}" in err and "start it with python main.py" in err


def test_script_errors_are_exit_2_before_any_connection(tmp_path, capsys):
    script = tmp_path / "s.yaml"
    script.write_text("title: X\nshots: []\n")
    port = closed_port()  # a script error wins over the missing server: nothing is sent
    assert q.main([str(TINY_API), "--script", str(script), "--server", f"http://127.0.0.1:{port}"]) == 2
    assert "problem in the script" in capsys.readouterr().err
    assert q.main([str(TINY_API), "--script", str(tmp_path / "none.yaml")]) == 2
    assert f"the script {tmp_path / 'none.yaml'} cannot be read (FileNotFoundError" in capsys.readouterr().err


def test_a_valid_scripts_notes_are_printed_before_queueing(tmp_path, capsys):
    """An action naming a character the shot does not show is a note (the script helper's), not an error: printed,
    and the command goes on (here to the closed port)."""
    script = tmp_path / "s.yaml"
    script.write_text("title: X\ncharacters: [{name: Ava, description: d}, {name: Bo, description: d}]\nshots:\n"
                      "  - {id: s1, scene: a, action: Ava calls Bo., duration: 1, characters: [Ava]}\n")
    port = closed_port()
    assert q.main([str(TINY_API), "--script", str(script), "--server", f"http://127.0.0.1:{port}"]) == 3
    err = capsys.readouterr().err
    node = next(nid for nid in q.script_nodes(q.load_workflow(str(TINY_API))))
    assert (f"note: node {node}: shots[0].action: names Bo, who is not in this shot's characters: what it says of Bo is "
            "bound to nobody on screen (add Bo to characters if seen)") in err and "no ComfyUI server" in err


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required: workflow"),
    ([str(TINY_API), "--timeout", "soon"], "argument --timeout: must be a number of seconds, got 'soon'"),
    ([str(TINY_API), "--timeout", "-5"], "argument --timeout: must be a number of seconds more than 0 and at most 1e+09, got -5"),
    ([str(TINY_API), "--timeout", "nan"], "argument --timeout: must be a number of seconds more than 0 and at most 1e+09, got nan"),
    ([str(TINY_API), "--server", "ftp://x"], "--server 'ftp://x': expected an http:// or https:// URL"),
    ([str(TINY_API), "--server", "localhost:8188"], "--server 'localhost:8188': expected an http:// or https:// URL"),
    ([str(TINY_API), "--set", "9.steps=" + "[" * 100000], "is nested too deeply to be an input's value"),
    ([str(TINY_API), "--set", "5"], "expected NODE_ID.input=value"),
    ([str(ROOT / "workflows" / "moviedreamer_movie.json")], "UI-format workflow"),
    ([str(TINY_API), "--project", "p", "--set", "11.project_name=[\"1\", 0]", "--set", "9.project_name=[\"1\", 0]"],
     "no project_name input"),
])
def test_usage_errors_are_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr


def test_unreadable_workflows_and_scripts_are_usage_errors_not_tracebacks(tmp_path):
    """Not UTF-8 (a binary file given by mistake), nested past the JSON parser's recursion: exit 2 with the reason."""
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000)
    for args, message in (([str(binary)], f"the workflow {binary} is not UTF-8 text (byte 0x80 at offset 8); export it"),
                          ([str(deep)], f"the workflow {deep} is nested too deeply to be a workflow"),
                          ([str(TINY_API), "--script", str(binary)], f"the script {binary} is not UTF-8 text (byte 0x80 at offset 8); a script file is YAML")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------ websocket client


def _ws_server(frames: list[bytes]):
    """A one-connection websocket server on loopback: handshake, then the given raw frames, then close."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got: dict = {}

    def serve():
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            got["request"] = data.decode()
            key = [l.split(":", 1)[1].strip() for l in got["request"].split("\r\n") if l.lower().startswith("sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())
            for f in frames:
                conn.sendall(f)
            conn.settimeout(2)
            try:
                got["reply"] = conn.recv(4096)  # the pong
            except OSError:
                pass
            conn.sendall(bytes([0x88, 2]) + struct.pack("!H", 1000))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t, got


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    head += bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n) if n < 65536 else bytes([127]) + struct.pack("!Q", n)
    return head + payload


def test_the_websocket_client_reads_text_fragments_and_large_frames_skips_binary_and_answers_pings():
    big = json.dumps({"type": "executed", "data": {"node": "9", "text": "x" * 70000}}).encode()
    progress = json.dumps({"type": "progress", "data": {"value": 1, "max": 2, "node": "9", "prompt_id": "p"}}).encode()
    frames = [_frame(0x1, b'{"type": "status", "data": {}}'), _frame(0x2, b"\x00\x00\x00\x01PNG..."),
              _frame(0x1, progress[:10], fin=False), _frame(0x0, progress[10:]), _frame(0x1, big), _frame(0x9, b"hi")]
    srv, thread, got = _ws_server(frames)
    try:
        ws = q.WebSocket(f"ws://127.0.0.1:{srv.getsockname()[1]}/ws?clientId=abc", timeout=5)
        assert ws.receive(5) == {"type": "status", "data": {}}
        assert ws.receive(5)["data"]["value"] == 1
        assert len(ws.receive(5)["data"]["text"]) == 70000
        with pytest.raises(ConnectionError):
            ws.receive(5)  # answers the ping, then the server closes
        ws.close()
    finally:
        thread.join(5)
        srv.close()
    assert got["request"].startswith("GET /ws?clientId=abc HTTP/1.1\r\n")
    reply = got["reply"]
    assert reply[0] == 0x8A and reply[1] == 0x80 | 2  # a masked pong
    assert bytes(b ^ reply[2 + i % 4] for i, b in enumerate(reply[6:8])) == b"hi"


def test_a_websocket_message_nested_too_deeply_is_skipped_as_one_that_is_not_json():
    """A server's text message nested thousands deep is passed over like any message that is not JSON (before: a
    RecursionError out of ``receive``, and the queue command ended in a traceback)."""
    frames = [_frame(0x1, b"[" * 100_000 + b"]" * 100_000), _frame(0x1, b"{nope"),
              _frame(0x1, b'{"type": "status", "data": {}}')]
    srv, thread, _ = _ws_server(frames)
    try:
        ws = q.WebSocket(f"ws://127.0.0.1:{srv.getsockname()[1]}/ws?clientId=abc", timeout=5)
        assert ws.receive(5) == {"type": "status", "data": {}}
        ws.close()
    finally:
        thread.join(5)
        srv.close()


def test_websocket_url_follows_the_server_url():
    assert q.websocket_url("http://127.0.0.1:8188", "c1") == "ws://127.0.0.1:8188/ws?clientId=c1"
    assert q.websocket_url("https://box.example/comfy/", "c1") == "wss://box.example/comfy/ws?clientId=c1"


def test_a_set_input_its_node_does_not_declare_is_refused_unless_it_is_a_link():
    """The host drops a value given to an input its node does not declare (``--set 9.step=2`` rendered with the
    workflow's steps: an audit) but passes a link on (nodes whose inputs grow as they are linked), so only values are
    refused, naming the inputs the node has."""
    from moviedreamer_core.queue.workflow import apply_overrides, unknown_inputs

    info = {"KSampler": {"input": {"required": {"steps": ["INT", {}], "seed": ["INT", {}]}, "optional": {},
                                   "hidden": {"prompt": "PROMPT"}}}}
    prompt = {"9": {"class_type": "KSampler", "inputs": {"steps": 20}}, "3": {"class_type": "Other", "inputs": {}}}
    said = apply_overrides(prompt, ["9.step=2", "9.image_2=[\"3\", 0]", "3.anything=1"])
    assert said[0] == ("9.step=2", "9", "step")
    assert unknown_inputs(said, prompt, info) == ("--set '9.step=2': node 9 (KSampler) has no input 'step' (its inputs: "
                                                  "steps, seed, prompt)")
    assert unknown_inputs(said[1:], prompt, info) is None  # a link, and a node type the server lacks (named elsewhere)
