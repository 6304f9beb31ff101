"""The pack in a real ComfyUI server on 127.0.0.1: what the UI and API clients see."""

from __future__ import annotations

import time

import pytest

from .harness import PACK_DIR, require_nodes


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    r = server.get("/object_info")
    assert r.status_code == 200
    return r.json()


def test_object_info_lists_our_nodes_with_tooltips(object_info):
    ours = {k: v for k, v in object_info.items() if v.get("category", "").startswith("MovieDreamer")}
    assert ours, "no MovieDreamer node in /object_info"
    assert {"MovieDreamerTestTinyCLIP", "MovieDreamerTestTinyCLIPVision"} <= set(ours)  # MOVIEDREAMER_TEST_NODES=1
    for node_id, node in ours.items():
        assert node["python_module"].endswith(PACK_DIR.name), node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip in /object_info"
        assert all(node["output_name"]), node_id


def test_script_encode_schema(object_info):
    require_nodes(object_info, "ScriptEncode", "MovieDreamerScriptInfo")
    enc = object_info["ScriptEncode"]
    assert enc["output"] == ["MD_SCRIPT", "MD_SCRIPT_EMBEDS"]
    assert enc["input"]["required"]["face_embedder"][1]["options"] == ["dlib", "insightface", "clip_vision_crop", "toycinema"]
    assert set(enc["input"]["optional"]) == {"clip", "images", "text_encoder", "clip_vision"}


def test_front_end_extension_is_served(server):
    js_files = sorted(p.relative_to(PACK_DIR / "js").as_posix() for p in (PACK_DIR / "js").rglob("*.js"))
    if not js_files:
        pytest.skip("js/ holds no front-end extension")
    listed = server.get("/extensions").json()
    prefix = f"/extensions/{server.pack_name}/"
    ours = sorted(e[len(prefix):] for e in listed if e.startswith(prefix))
    assert ours == js_files, listed
    js = server.get(prefix + js_files[0])
    assert js.status_code == 200 and "registerExtension" in js.text


def test_a_prompt_reports_over_the_websocket(server):
    """Tiny CLIP from the test-only node into the host's own text encoder: the messages the UI shows."""
    prompt = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": int(time.time() * 1000) % 100000}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "a lighthouse at night"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    entry, messages = server.run(prompt, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["3"]["text"][0]
    types = [m["type"] for m in messages]
    assert types[0] == "status"  # the queue state, sent on connecting
    assert types.index("execution_start") < types.index("execution_success")
    executed = [m["data"]["node"] for m in messages if m["type"] == "executing" and m["data"].get("node")]
    assert executed == ["1", "2", "3"]
    assert [m["data"]["node"] for m in messages if m["type"] == "executed"] == ["3"]


def test_broken_script_is_refused_at_queue_time_with_the_field(server, object_info):
    require_nodes(object_info, "ScriptEncode", "MovieDreamerScriptInfo")
    prompt = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 1}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": "title: x\nshots:\n  - id: a\n    scene: s\n    action: go\n    duration: -1\n",
            "script_file": "(none: use the text above)", "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}},
    }
    r = server.post_prompt(prompt)
    assert r.status_code == 400
    body = r.json()
    details = " ".join(e["details"] for e in body["node_errors"]["2"]["errors"])
    assert "shots[0].duration: must be a positive number of seconds, got -1" in details


def test_a_script_runs_through_the_server(server, object_info):
    require_nodes(object_info, "ScriptEncode", "MovieDreamerScriptInfo")
    prompt = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": int(time.time()) % 1000}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": "title: Empty Room\nstyle: pencil sketch\nshots:\n  - id: a\n    scene: an empty room\n"
                      "    action: [Dust falls., Light moves.]\n    duration: 2\n",
            "script_file": "(none: use the text above)", "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}},
    }
    entry, _ = server.run(prompt, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert '"Empty Room": 2 keyframes, 0 characters' in entry["outputs"]["3"]["text"][0]


# ------------------------------------------------------------------------------- front-end support


VALID_SCRIPT = """title: Route Test
characters:
  - name: Ava
    description: a woman in a green raincoat
shots:
  - id: s1
    scene: a cliff
    action: [Ava climbs., Ava waits.]
    characters: [Ava]
    duration: 4
"""


def test_script_validation_route_answers_as_scriptencode_would(server):
    ok = server.post("/moviedreamer/validate_script", json={"script": VALID_SCRIPT, "script_file": ""})
    assert ok.status_code == 200
    assert ok.json() == {"ok": True, "issues": [], "notes": [], "characters": ["Ava"], "title": "Route Test", "shots": 1,
                         "keyframes": 2, "seconds": 4.0, "source": "script text"}
    two = VALID_SCRIPT.replace("shots:", "  - name: Bo\n    description: a man\nshots:").replace("Ava waits.", "Ava calls Bo.")
    noted = server.post("/moviedreamer/validate_script", json={"script": two, "script_file": ""}).json()
    assert noted["ok"] and noted["characters"] == ["Ava", "Bo"]
    assert noted["notes"] == [{"path": "shots[0].action[1]", "message": "names Bo, who is not in this shot's characters: what "
                               "it says of Bo is bound to nobody on screen (add Bo to characters if seen)"}]
    bad = server.post("/moviedreamer/validate_script",
                      json={"script": VALID_SCRIPT.replace("[Ava]", "[Ava, Mira]").replace("duration: 4", "duration: -2")}).json()
    assert not bad["ok"] and bad["characters"] == ["Ava"]
    assert {"path": "shots[0].characters[1]", "message": 'unknown character "Mira" (known: Ava)'} in bad["issues"]
    assert any(i["path"] == "shots[0].duration" for i in bad["issues"])
    outside = server.post("/moviedreamer/validate_script", json={"script": "", "script_file": "../secrets.yaml"}).json()
    assert not outside["ok"] and outside["issues"][0]["path"] == "script_file"
    missing_photo = server.post("/moviedreamer/validate_script",
                                json={"script": VALID_SCRIPT.replace("description: a woman in a green raincoat",
                                                                     "description: a woman\n    references: [nobody.png]")}).json()
    assert not missing_photo["ok"] and "nobody.png" in missing_photo["issues"][0]["message"]
    assert server.post("/moviedreamer/validate_script", data="not json").status_code == 400


def test_planner_and_renderer_fill_the_storyboard_panel_over_the_websocket(server, photos, model_dirs):
    """The messages the storyboard panel listens to: the labelled keyframe list from the planner and the
    renderer, then one message per saved keyframe whose image the host's /view route serves."""
    import shutil

    from .test_render import graph, script

    md, _ = model_dirs
    shutil.copy(md / "tiny_renderer.safetensors", server.workdir / "models" / "moviedreamer" / "tiny_renderer.safetensors")
    for name in ("astronaut.png", "hopper.png"):
        shutil.copy(photos / name, server.dirs["input"] / name)
    entry, messages = server.run(graph(script(3, title_suffix=" panel"), project="panel"), timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    boards = [m["data"] for m in messages if m.get("type") == "moviedreamer.storyboard"]
    assert [b["node"] for b in boards] == ["7", "11"]
    assert [k["shot"] for k in boards[0]["keyframes"]] == ["s0", "s1", "s2"]
    assert boards[0]["keyframes"][0] == {"index": 0, "shot": "s0", "action": "something happens 0.", "characters": ["Eileen"]}
    frames = [m["data"] for m in messages if m.get("type") == "moviedreamer.keyframe"]
    assert [(f["node"], f["index"], f["total"]) for f in frames] == [("11", 0, 3), ("11", 1, 3), ("11", 2, 3)]
    image = frames[1]["image"]
    assert image["type"] == "output" and image["subfolder"] == "moviedreamer/panel/keyframes"
    view = server.get("/view", params=image)
    assert view.status_code == 200 and view.content[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------- hostile scripts (issue #20)


ROUTE = "/moviedreamer/validate_script"


def _heavy_script() -> str:
    """A script of about 600 KB that takes the validator a while (5000 shots of unknown characters)."""
    crowd = ", ".join(f"x{k}" for k in range(16))
    return "title: heavy\nshots:\n" + "".join(
        f"  - {{id: {i}, scene: s, action: a, duration: 1, characters: [{crowd}]}}\n" for i in range(5000))


def test_route_refuses_files_and_bodies_that_are_not_text_with_a_clear_4xx(server):
    scripts = server.dirs["input"] / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "photo.yaml").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with open(scripts / "huge.yaml", "wb") as f:
        f.truncate(30_000_000)  # sparse: refused by its size, never read
    photo = server.post(ROUTE, json={"script": "", "script_file": "scripts/photo.yaml"})
    assert photo.status_code == 422
    assert photo.json()["issues"] == [{"path": "script_file", "message": '"scripts/photo.yaml" is not UTF-8 text (byte '
                                       "0x89 at offset 0); a script file is YAML or JSON saved as UTF-8"}]
    start = time.perf_counter()
    huge = server.post(ROUTE, json={"script": "", "script_file": "scripts/huge.yaml"})
    assert time.perf_counter() - start < 2 and huge.status_code == 422
    assert "30,000,000 bytes, more than the limit" in huge.json()["issues"][0]["message"]
    not_utf8 = server.post(ROUTE, data=b'{"script": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.json()["issues"][0]["message"]
    deep = server.post(ROUTE, data="[" * 100000 + "]" * 100000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and deep.json()["issues"][0]["path"] == "request"
    for body in ('{"script": 5}', "[]", '"text"', '{"script": "x", "script_file": ["a"]}'):
        assert server.post(ROUTE, data=body).status_code == 400, body


def test_route_refuses_a_request_over_the_limit_before_reading_it(server):
    """Headers announce 30 MB; only 1 KB is sent: the answer comes at once, without waiting for the rest."""
    import socket

    from moviedreamer_core.script.limits import MAX_REQUEST_BYTES

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 30000000\r\n\r\n".encode() + b'{"script": "' + b"x" * 1000)
        start = time.perf_counter()
        answer = sock.recv(65536).decode(errors="replace")
    assert time.perf_counter() - start < 5
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert f"the request is larger than the limit of {MAX_REQUEST_BYTES:,} bytes" in answer


def test_route_names_the_field_unit_and_limit_of_an_over_long_script(server):
    from moviedreamer_core.script.limits import MAX_SCRIPT_CHARS

    answer = server.post(ROUTE, json={"script": "x" * (MAX_SCRIPT_CHARS + 1)})
    assert answer.status_code == 200
    assert answer.json()["issues"] == [{"path": "script", "message": f"the script is {MAX_SCRIPT_CHARS + 1:,} characters "
                                        f"long, more than the limit of {MAX_SCRIPT_CHARS:,} characters (about 1 MB); "
                                        "split the movie into several scripts"}]


def test_route_lists_fifty_problems_and_counts_the_rest(server):
    answer = server.post(ROUTE, json={"script": _heavy_script()}).json()
    assert not answer["ok"] and answer["problems"] == 80000 and len(answer["issues"]) == 51
    assert answer["issues"][-1] == {"path": "script", "message": "... and 79950 more problems (fix the ones above first)"}


def _answering_while(server, workers, settle: float = 0.0) -> tuple[float, list[float]]:
    """Start the ``workers`` (threads sending requests) and ask /system_stats every 50 ms until they are done: the
    seconds they took, and each /system_stats answer's time (each must be a 200)."""
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(settle)
    latencies = []
    while any(w.is_alive() for w in workers):
        t = time.perf_counter()
        assert server.get("/system_stats").status_code == 200
        latencies.append(time.perf_counter() - t)
        time.sleep(0.05)
    for w in workers:
        w.join()
    return time.perf_counter() - start, latencies


def test_the_server_answers_while_scripts_are_being_checked(server):
    """Checks run off the event loop: while several large scripts are being checked (through the route and
    through /prompt), another request is answered long before they are all done. (On the event loop, that
    request would wait for every check that started before it.)"""
    import threading

    heavy = _heavy_script()
    prompt = {"1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 1}},
              "2": {"class_type": "ScriptEncode", "inputs": {"script": heavy, "script_file": "(none: use the text above)",
                                                            "clip": ["1", 0], "face_embedder": "dlib"}},
              "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}}}
    statuses = []
    workers = [threading.Thread(target=lambda: statuses.append(server.post(ROUTE, json={"script": heavy}).status_code))
               for _ in range(3)]
    workers.append(threading.Thread(target=lambda: statuses.append(server.post_prompt(prompt).status_code)))
    busy, latencies = _answering_while(server, workers, settle=0.1)
    assert sorted(statuses) == [200, 200, 200, 400], statuses
    assert busy > 1.5 and len(latencies) >= 5, (busy, latencies)
    assert max(latencies) < busy / 3, f"{max(latencies):.2f} s for /system_stats during {busy:.2f} s of checks"


def test_bodies_of_the_largest_size_full_of_quotes_are_refused_while_the_server_answers(server):
    """A request body is scanned before ``json.loads`` (depth, size); an unterminated string of escaped quotes once
    made that scan quadratic (a 90 KB body held the event loop for 25 s: the scan ran on it). Now each body of the
    largest size is refused within seconds, and /system_stats answers meanwhile."""
    import threading

    from moviedreamer_core.script.limits import MAX_REQUEST_BYTES

    bodies = ['{"script": "' + '\\"' * (MAX_REQUEST_BYTES // 2 - 20),
              '{"script": ' + '""' * (MAX_REQUEST_BYTES // 2 - 20)]
    answers = []
    workers = [threading.Thread(target=lambda b=b: answers.append(server.post(ROUTE, data=b.encode())))
               for b in bodies]
    busy, latencies = _answering_while(server, workers)
    assert [a.status_code for a in answers] == [400, 400]
    assert all(a.json()["issues"][0]["path"] == "request" for a in answers)
    assert busy < 20, f"{busy:.1f} s to refuse two bodies of {MAX_REQUEST_BYTES:,} bytes"
    assert latencies and max(latencies) < 1.0, f"/system_stats took {max(latencies):.2f} s while the bodies were scanned"


def test_prompt_answer_and_log_stay_small_for_a_script_naming_100000_characters(server, object_info):
    require_nodes(object_info, "ScriptEncode", "MovieDreamerScriptInfo")
    crowd = ",".join(f"n{i}" for i in range(100000))
    script = f"title: crowd\nshots:\n  - {{id: 1, scene: s, action: a, duration: 1, characters: [{crowd}]}}\n"
    assert len(script) > 600_000
    prompt = {"1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 1}},
              "2": {"class_type": "ScriptEncode", "inputs": {"script": script, "script_file": "(none: use the text above)",
                                                            "clip": ["1", 0], "face_embedder": "dlib"}},
              "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}}}
    log_before = server.log_path.stat().st_size
    r = server.post_prompt(prompt)
    assert r.status_code == 400
    assert len(r.content) < 20_000, f"{len(r.content)} bytes"
    errors = r.json()["node_errors"]["2"]["errors"]
    details = " ".join(e["details"] for e in errors)
    assert details.count("100000 characters on screen in one shot is too many") == 1
    assert details.count('unknown character "n0"') == 1
    assert [e["extra_info"]["input_name"] for e in errors if "too many" in e["details"]] == ["script"]
    time.sleep(0.5)  # the log is written by the server process
    assert server.log_path.stat().st_size - log_before < 20_000
