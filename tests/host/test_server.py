"""The pack in a real ComfyUI server on 127.0.0.1: what the UI and API clients see."""

from __future__ import annotations

import time




def test_object_info_lists_our_nodes_with_tooltips(server):
    info = server.get("/object_info").json()
    ours = {k: v for k, v in info.items() if v.get("category", "").startswith("MovieDreamer")}
    assert "ScriptEncode" in ours and "MovieDreamerScriptInfo" in ours
    for node_id, node in ours.items():
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip in /object_info"
        assert all(node["output_name"]), node_id
    enc = ours["ScriptEncode"]
    assert enc["output"] == ["MD_SCRIPT", "MD_SCRIPT_EMBEDS"]
    assert enc["input"]["required"]["face_embedder"][1]["options"] == ["dlib", "insightface", "clip_vision_crop"]
    assert set(enc["input"]["optional"]) == {"images", "clip_vision"}


def test_front_end_extension_is_served(server):
    exts = server.get("/extensions").json()
    ours = [e for e in exts if e.endswith("moviedreamer.js")]
    assert ours, exts
    js = server.get(ours[0])
    assert js.status_code == 200 and "registerExtension" in js.text


def test_broken_script_is_refused_at_queue_time_with_the_field(server):
    prompt = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 1}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": "title: x\nshots:\n  - id: a\n    scene: s\n    action: go\n    duration: -1\n",
            "script_file": "(none: use the text above)", "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}},
    }
    r = server.queue(prompt)
    assert r.status_code == 400
    body = r.json()
    details = " ".join(e["details"] for e in body["node_errors"]["2"]["errors"])
    assert "shots[0].duration: must be a positive number of seconds, got -1" in details


def test_a_script_runs_through_the_server(server):
    prompt = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": int(time.time()) % 1000}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": "title: Empty Room\nstyle: pencil sketch\nshots:\n  - id: a\n    scene: an empty room\n"
                      "    action: [Dust falls., Light moves.]\n    duration: 2\n",
            "script_file": "(none: use the text above)", "clip": ["1", 0], "face_embedder": "dlib"}},
        "3": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 5}},
    }
    r = server.queue(prompt)
    assert r.status_code == 200, r.text
    entry = server.wait_history(r.json()["prompt_id"], timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert '"Empty Room": 2 keyframes, 0 characters' in entry["outputs"]["3"]["text"][0]
