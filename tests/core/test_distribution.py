"""The pure parts of distributed runs: the split, the participation input, the on-prompt step, the payload framing
and several writers sharing one project folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moviedreamer_core.distribution import payload as pl
from moviedreamer_core.distribution.participation import Participation, parse_participation
from moviedreamer_core.distribution.prompt import annotate_prompt
from moviedreamer_core.distribution.results import gather, missing_work, share_payload
from moviedreamer_core.distribution.split import ShotOutline, shot_chains, split_shots
from moviedreamer_core.project import MovieProject


def outlines(spec: str) -> list[ShotOutline]:
    """``"c d c w"``: one shot per letter, c=cut, d=dissolve, w=wipe, n=continuous, f=fade; 2 keyframes, 2 s."""
    names = {"c": "cut", "d": "dissolve", "w": "wipe", "n": "continuous", "f": "fade"}
    return [ShotOutline(2, 2.0, names[t]) for t in spec.split()]


def test_chains_keep_shots_that_need_the_previous_one_together():
    assert shot_chains(outlines("c d c w n f c")) == [[0, 1], [2, 3, 4], [5], [6]]
    assert shot_chains(outlines("d c")) == [[0], [1]], "the first shot starts a chain whatever its transition"


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_split_is_a_partition_into_contiguous_whole_chains(n):
    rng = np.random.default_rng(n)
    shots = [ShotOutline(int(rng.integers(1, 4)), float(rng.uniform(0.5, 6)), str(rng.choice(["cut", "fade", "dissolve", "continuous"])))
             for _ in range(41)]
    shares = split_shots(shots, n)
    assert len(shares) == n
    flat = [s for share in shares for s in share.shots]
    assert flat == list(range(len(shots))), "every shot once, in order"
    chain_of = {s: i for i, chain in enumerate(shot_chains(shots)) for s in chain}
    owners = {}
    for p, share in enumerate(shares):
        for s in share.shots:
            owners.setdefault(chain_of[s], set()).add(p)
    assert all(len(o) == 1 for o in owners.values()), "a chain is never cut between participants"
    starts = np.cumsum([0] + [sh.n_keyframes for sh in shots])
    for share in shares:
        assert share.keyframes == tuple(k for s in share.shots for k in range(starts[s], starts[s + 1]))
    if n == 2:
        costs = [sum(shots[s].cost() for s in share.shots) for share in shares]
        assert max(costs) / sum(costs) < 0.6, f"two shares of about equal cost, got {costs}"


def test_participation_round_trip_and_refusals():
    who = Participation("exec_1_abc", "worker_2", ("master", "worker_1", "worker_2"))
    back = parse_participation(who.to_json())
    assert back == who and back.index == 2 and not back.is_master
    assert parse_participation("") is None and parse_participation(None) is None
    for bad in ["{", json.dumps({"format": 1}), json.dumps({"format": 1, "job": "j", "me": "../x", "participants": ["master"]}),
                json.dumps({"format": 1, "job": "j", "me": "w9", "participants": ["master", "w1"]}),
                json.dumps({"format": 1, "job": "j", "me": "master", "participants": ["w"] * 100}), "x" * 20000]:
        with pytest.raises(ValueError, match="distributed"):
            parse_participation(bad)
    with pytest.raises(ValueError, match=r"distributed: not JSON \(nested too deeply\)"):  # not a RecursionError
        parse_participation("[" * 5000 + "]" * 5000)


def _prompt(is_worker: bool, master_renders=True) -> dict:
    collector = {"images": ["3", 2], "audio": ["3", 3], "multi_job_id": "exec_42_ab12cd_9", "is_worker": is_worker,
                 "enabled_worker_ids": json.dumps(["w1", "w2"])}
    if is_worker:
        collector.update(worker_id="w2", master_url="http://127.0.0.1:1")
    return {"2": {"class_type": "IdentityDiffusionRender", "inputs": {"master_renders": master_renders}},
            "3": {"class_type": "ShotAnimate", "inputs": {}},
            "9": {"class_type": "DistributedCollector", "inputs": collector},
            "10": {"class_type": "MovieDreamerGather", "inputs": {"results": ["9", 1]}}}


def test_the_on_prompt_step_reads_the_collector():
    master = annotate_prompt(_prompt(False))
    who = parse_participation(master["3"]["inputs"]["distributed"])
    assert who == Participation("exec_42_ab12cd", "master", ("master", "w1", "w2"), True, 0.1), "animatic seconds are cheap"
    assert master["10"]["inputs"]["distributed"] == master["2"]["inputs"]["distributed"]
    worker = parse_participation(annotate_prompt(_prompt(True))["2"]["inputs"]["distributed"])
    assert worker.me == "w2" and worker.index == 2 and worker.job == who.job
    orchestrating = parse_participation(annotate_prompt(_prompt(True, master_renders=False))["3"]["inputs"]["distributed"])
    assert orchestrating.participants == ("w1", "w2") and orchestrating.index == 1
    with_model = _prompt(False)
    with_model["3"]["inputs"].update(backend="auto", model=["7", 0])
    assert parse_participation(annotate_prompt(with_model)["3"]["inputs"]["distributed"]).second_cost == 8.0, \
        "a video model's seconds cost more than keyframes"
    # enabled_worker_ids nested thousands deep is read as a malformed one is (no workers: a worker's nodes then refuse
    # the run); its RecursionError made the step leave the prompt undistributed, and a worker made every shot alone
    for is_worker in (False, True):
        deep, malformed = _prompt(is_worker), _prompt(is_worker)
        deep["9"]["inputs"]["enabled_worker_ids"] = "[" * 100_000 + "]" * 100_000
        malformed["9"]["inputs"]["enabled_worker_ids"] = "[nope"
        annotate_prompt(deep), annotate_prompt(malformed)
        for node in ("2", "3", "10"):
            assert "distributed" in deep[node]["inputs"]
            assert deep[node]["inputs"]["distributed"] == malformed[node]["inputs"]["distributed"]
    plain = _prompt(False)
    plain["9"]["inputs"]["multi_job_id"] = ""
    plain["3"]["inputs"]["distributed"] = "stale"
    assert "distributed" not in annotate_prompt(plain)["3"]["inputs"], "an ordinary queue removes the value"


def test_payloads_survive_the_waveform_and_concatenation():
    rng = np.random.default_rng(0)
    a = pl.Payload({"participant": "master", "files": [{"name": "keyframes/keyframe_00001.png", "size": 5, "sha256": pl.sha256(b"hello"), "sent": True}]},
                   {"keyframes/keyframe_00001.png": b"hello"})
    blob = rng.integers(0, 256, 1001, dtype=np.uint8).tobytes()
    b = pl.Payload({"participant": "w1", "files": [{"name": "shots/shot_00002_s03.mp4", "size": len(blob), "sha256": pl.sha256(blob), "sent": True},
                                                   {"name": "shots/shot_00002.preview.safetensors", "size": 7, "sha256": "x", "sent": False}]},
                   {"shots/shot_00002_s03.mp4": blob})
    wave = np.concatenate([pl.to_waveform(pl.encode(a)), pl.to_waveform(pl.encode(b))], axis=-1)
    back = pl.decode_all(pl.from_waveform(wave.astype(np.float32)))
    assert [p.header["participant"] for p in back] == ["master", "w1"]
    assert back[1].files == {"shots/shot_00002_s03.mp4": blob} and back[0].files["keyframes/keyframe_00001.png"] == b"hello"


def test_the_gathered_results_are_unpacked_in_little_more_than_their_own_size():
    """Unpacking took about 9 times the results' size at once (whole-array temporaries), some 19 GB for the 2 GB a
    run may gather (an audit); chunk by chunk it holds the results' bytes and one copy."""
    import os
    import tracemalloc

    data = os.urandom(12_000_000)  # four chunks of samples
    waveform = pl.to_waveform(data)
    tracemalloc.start()
    try:
        back = pl.from_waveform(waveform)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert back == data and peak < 2.5 * len(data), peak / len(data)
    bad = waveform.copy()
    bad[0, 0, -5] = 0.5  # not a byte triple, in the last chunk
    with pytest.raises(ValueError, match="values are not bytes"):
        pl.from_waveform(bad)


@pytest.mark.parametrize("name", ["../escape.png", "keyframes/../../x.png", "/etc/passwd", "shots/shot_1.mp4", "manifest.json",
                                  # names the project never gives (an audit): written, never recorded or moved aside
                                  "keyframes/keyframe_000002.png", "keyframes/keyframe_\u0660\u0660\u0660\u0660\u0662.png",
                                  "keyframes/keyframe_" + "1" * 300 + ".png", "keyframes/keyframe_00001.png\n"])
def test_payload_file_names_stay_in_the_project(name):
    bad = pl.Payload({"files": [{"name": name, "size": 1, "sha256": pl.sha256(b"x"), "sent": True}]}, {name: b"x"})
    with pytest.raises(ValueError, match="not a keyframe or shot file"):
        pl.decode_all(pl.encode(bad))


def test_damaged_payloads_are_refused():
    good = pl.encode(pl.Payload({"files": [{"name": "keyframes/keyframe_00000.png", "size": 3, "sha256": pl.sha256(b"abc"), "sent": True}]},
                                {"keyframes/keyframe_00000.png": b"abc"}))
    with pytest.raises(ValueError, match="damaged"):
        pl.decode_all(good[:-1] + b"x")
    with pytest.raises(ValueError, match="no MovieDreamer payload"):
        pl.decode_all(b"not a payload at all")
    with pytest.raises(ValueError, match="not hold MovieDreamer payloads"):
        pl.from_waveform(np.array([[[0.5, -1.0]]], np.float32))


def test_writers_share_a_folder_and_the_master_folds_their_journals(tmp_path):
    a = MovieProject(str(tmp_path), "film", writer="w1")
    b = MovieProject(str(tmp_path), "film", writer="w2")
    pixels = np.full((4, 4, 3), 7, np.uint8)
    a.save_keyframe(0, pixels, "sig0", {"shot": "s01"})
    b.save_keyframe(1, pixels, "sig1", {"shot": "s02"})
    a.compact(), b.compact()  # writers never write manifest.json
    assert not (tmp_path / "moviedreamer" / "film" / "manifest.json").exists()
    with pytest.raises(RuntimeError, match="only the master"):
        a.retire_keyframes(0)
    master = MovieProject(str(tmp_path), "film")
    assert master.keyframe_done(0, "sig0") and master.keyframe_done(1, "sig1")
    journals = list((tmp_path / "moviedreamer" / "film" / "journals").iterdir())
    assert journals and all(j.stat().st_size == 0 for j in journals), "folded into manifest.json, then emptied"
    assert MovieProject(str(tmp_path), "film").keyframe_done(1, "sig1")


def test_gather_writes_sent_files_and_names_what_did_not_arrive(tmp_path):
    shots = outlines("c c c c")
    who = Participation("job1", "master", ("master", "w1"))
    worker_side = MovieProject(str(tmp_path / "worker"), "film", writer="w1")
    share = split_shots(shots, 2)[1]
    for k in share.keyframes[:-1]:  # the last keyframe of the share was never made (a kill)
        worker_side.save_keyframe(k, np.full((4, 4, 3), k, np.uint8), f"sig{k}", {})
    sent = share_payload(worker_side, Participation("job1", "w1", who.participants), share, send_files=True)
    master = MovieProject(str(tmp_path / "master"), "film")
    got = gather(master, pl.decode_all(pl.encode(sent)), "job1")
    assert got.keyframes == set(share.keyframes[:-1]) and not got.problems
    assert master.keyframe_done(share.keyframes[0], f"sig{share.keyframes[0]}")
    lines = missing_work(shots, who, got)
    assert any(line.startswith("master:") for line in lines) and any(line.startswith("w1:") and "1 of its 4 keyframes" in line for line in lines)
    other = gather(master, pl.decode_all(pl.encode(sent)), "another job")
    assert not other.keyframes and other.problems


# --------------------------------------------------------------------------- what Gather Movie accepts (an audit's)

from moviedreamer_core.distribution.participation import MASTER  # noqa: E402
from moviedreamer_core.distribution.results import check_payloads, expected_of  # noqa: E402

SHOTS = "c c c c"  # four one-shot chains: master gets shots 0-1, w1 shots 2-3


def _made(tmp_path, who: Participation, share, sent: bool, project_name="film", script="script-hash", fps=12.0):
    """A participant's real payload: its share's keyframes saved in its own folder, then packed as ShotAnimate does."""
    folder = MovieProject(str(tmp_path / ("gathered" if who.is_master else who.me)), "film", writer=who.writer)
    for k in share.keyframes:
        folder.save_keyframe(k, np.full((4, 4, 3), k, np.uint8), f"sig{k}", {})
    return share_payload(folder, who, share, send_files=sent, seconds={"animate": 1.5}, fps=fps,
                         project_name=project_name, script_hash=script)


def _run(tmp_path, **worker):
    """The master's and w1's payloads (w1 sends its files) as the collector concatenates them, and what the master
    expects; ``worker`` changes w1's payload (``project_name``, ``script``, ``fps``)."""
    who = Participation("job1", MASTER, (MASTER, "w1"))
    shares = split_shots(outlines(SHOTS), 2)
    master = _made(tmp_path, who, shares[0], False)
    w1 = _made(tmp_path, Participation("job1", "w1", who.participants), shares[1], True, **worker)
    return [master, w1], expected_of("film", "script-hash", outlines(SHOTS), who), shares


def _decoded(payloads) -> list:
    return pl.decode_all(pl.from_waveform(np.concatenate([pl.to_waveform(pl.encode(p)) for p in payloads], axis=-1)))


def _nothing_written(tmp_path) -> bool:
    """None of w1's keyframes (4-7) is in the master's folder (the master's own, 0-3, are)."""
    return not any((tmp_path / "gathered").rglob("keyframe_0000[4-7].png"))


def test_gather_accepts_a_run_that_is_what_it_expects(tmp_path):
    payloads, expected, shares = _run(tmp_path)
    master = MovieProject(str(tmp_path / "gathered"), "film")
    got = gather(master, _decoded(payloads), "job1", expected)
    assert got.keyframes == set(shares[0].keyframes + shares[1].keyframes) == set(range(8)) and not got.problems, got.problems
    # every gathered keyframe keeps its file's SHA-256, so one replaced on disk later is made again, as after a run
    # of one instance (the entries lost it: a keyframe replaced after a distributed run was reused; an audit)
    with master.compacting():
        pass
    again = MovieProject(str(tmp_path / "gathered"), "film")
    assert all(again.keyframe_entry(k).get("sha256") for k in range(8))
    assert again.keyframe_done(0, "sig0") and again.keyframe_done(5, "sig5")
    for k in (0, 5):  # the master's own keyframe and a worker's
        other = MovieProject(str(tmp_path / "elsewhere"), "film")
        other.save_keyframe(k, np.full((4, 4, 3), 99, np.uint8), "x", {})
        (Path(again.root) / again.keyframe_file(k)).write_bytes((Path(other.root) / other.keyframe_file(k)).read_bytes())
    again = MovieProject(str(tmp_path / "gathered"), "film")
    assert not again.keyframe_done(0, "sig0") and not again.keyframe_done(5, "sig5") and again.keyframe_done(4, "sig4")


@pytest.mark.parametrize("change, message", [
    (dict(project_name="another"), r"results: participant w1 made project 'another'.*project_name makes 'film'.*same project_name"),
    (dict(script="another-hash"), r"results: participant w1 made another script.*same ScriptEncode"),
])
def test_gather_refuses_results_of_another_project_or_script_before_writing(tmp_path, change, message):
    payloads, expected, _ = _run(tmp_path, **change)
    found = _decoded(payloads)
    with pytest.raises(ValueError, match=message):
        check_payloads(found, "job1", expected)
    master = MovieProject(str(tmp_path / "gathered"), "film")
    with pytest.raises(ValueError, match=message):
        gather(master, found, "job1", expected)
    assert _nothing_written(tmp_path), "nothing of the refused results was written"


def _header_bytes(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return pl.MAGIC + len(raw).to_bytes(8, "little") + raw


@pytest.mark.parametrize("data, message", [
    (pl.MAGIC, r"results: payload 1 is cut short"),
    (pl.MAGIC + (100).to_bytes(8, "little") + b"{}", r"results: payload 1 declares a header of 100 bytes, but only 2"),
    (pl.MAGIC + (2).to_bytes(8, "little") + b"\xff\xfe", r"results: payload 1 has a header that is not UTF-8"),
    (pl.MAGIC + (5).to_bytes(8, "little") + b"{nope", r"results: payload 1 has a header that is not JSON"),
    pytest.param(pl.MAGIC + (20000).to_bytes(8, "little") + b"[" * 10000 + b"]" * 10000,
                 r"results: payload 1 has a header that is not JSON \(nested too deeply\)", id="header nested too deeply"),
    (_header_bytes([1, 2]), r"results: payload 1 has a header that is not an object"),
    (_header_bytes({"files": ["x"]}), r"results: payload 1 has a files\[0\] that is not an object"),
    (_header_bytes({"files": {"a": 1}}), r"results: payload 1 has a header whose files field is not a list"),
    (_header_bytes({"files": [{"name": "keyframes/keyframe_00000.png", "size": True, "sha256": "x"}]}), r"files\[0\].*bad size"),
    (_header_bytes({"files": [{"name": "keyframes/keyframe_00000.png", "size": 1, "sha256": 5}]}), r"files\[0\].*bad sha256"),
    (_header_bytes({"files": [{"name": "keyframes/keyframe_00000.png", "size": 0, "sha256": "x", "sent": "yes"}]}),
     r"files\[0\].*sent field"),
])
def test_malformed_results_are_refused_naming_the_input_and_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        pl.decode_all(data)


@pytest.mark.parametrize("field, value, message", [
    ("seconds", {"animate": "x"}, r"participant w1's payload: seconds"),
    ("seconds", [], r"participant w1's payload: seconds"),
    ("fps", "12", r"participant w1's payload: fps"),
    ("fps", float("nan"), r"participant w1's payload: fps"),
    ("keyframes", {"x": {}}, r"participant w1's payload: keyframes: 'x' is not an index"),
    ("keyframes", {"4": "done"}, r"participant w1's payload: keyframes\[4\] is not an object"),
    ("keyframes", {"4": {"signature": 1, "sha256": "x"}}, r"keyframes\[4\].signature is not a text"),
    ("shots", {"2": {"signature": "s", "sha256": "x", "file": 3}}, r"shots\[2\].file is not a text"),
    ("shots", {"2": {"signature": "s", "sha256": "x", "file": "f", "frames": "9"}}, r"shots\[2\].frames"),
    ("participant", 7, r"participant is not a text"),
    ("project", None, r"project is not a text"),
])
def test_malformed_headers_are_refused_before_anything_is_written(tmp_path, field, value, message):
    payloads, expected, _ = _run(tmp_path)
    payloads[1].header[field] = value
    found = _decoded(payloads)
    master = MovieProject(str(tmp_path / "gathered"), "film")
    for attempt in (lambda: check_payloads(found, "job1", expected), lambda: gather(master, found, "job1", expected),
                    lambda: gather(master, found, None)):
        with pytest.raises(ValueError, match=r"results: " if field == "participant" else message):
            attempt()
    assert _nothing_written(tmp_path)


def test_a_participant_must_make_its_shots_at_the_masters_fps(tmp_path):
    payloads, expected, _ = _run(tmp_path, fps=100000.0)
    with pytest.raises(ValueError, match=r"results: participant w1's payload: fps"):
        check_payloads(_decoded(payloads), "job1", expected)
    payloads, expected, _ = _run(tmp_path / "again", fps=24.0)
    with pytest.raises(ValueError, match=r"results: participant w1 made its shots at 24.0 fps, the master at 12.0"):
        check_payloads(_decoded(payloads), "job1", expected)
    # the master's payload sets the fps even when it comes last
    with pytest.raises(ValueError, match=r"participant w1 made its shots at 24.0 fps, the master at 12.0"):
        check_payloads(_decoded(payloads[::-1]), "job1", expected)


def test_a_participant_delivers_only_its_own_share(tmp_path):
    """w1 also sends keyframe 0 (the master's) with a manifest entry signed "evil": refused, and the master's own
    keyframe 0 is not touched. So are a manifest entry alone outside its share, a participant that is not in the run,
    and a participant that sends twice."""
    payloads, expected, shares = _run(tmp_path)
    gathered = MovieProject(str(tmp_path / "gathered"), "film")
    gathered.save_keyframe(0, np.full((4, 4, 3), 200, np.uint8), "mine", {})
    before = (tmp_path / "gathered" / "moviedreamer" / "film" / "keyframes" / "keyframe_00000.png").read_bytes()
    evil = b"not the master's keyframe"
    bad = pl.Payload(dict(payloads[1].header, files=payloads[1].header["files"] + [
        {"name": "keyframes/keyframe_00000.png", "size": len(evil), "sha256": pl.sha256(evil), "sent": True}],
        keyframes={**payloads[1].header["keyframes"], "0": {"signature": "evil", "sha256": pl.sha256(evil)}}),
        {**payloads[1].files, "keyframes/keyframe_00000.png": evil})
    with pytest.raises(ValueError, match=r"results: participant w1 sent keyframes/keyframe_00000.png, which is not in its share"):
        gather(gathered, _decoded([payloads[0], bad]), "job1", expected)
    assert (tmp_path / "gathered" / "moviedreamer" / "film" / "keyframes" / "keyframe_00000.png").read_bytes() == before
    assert MovieProject(str(tmp_path / "gathered"), "film").keyframe_done(0, "mine")
    entry_only = pl.Payload(dict(payloads[1].header, shots={"0": {"signature": "evil", "sha256": "x", "file": "shots/shot_00000_s1.mp4"}}),
                            payloads[1].files)
    with pytest.raises(ValueError, match=r"participant w1 sent the manifest entry of shot 0, which is not in its share"):
        check_payloads(_decoded([payloads[0], entry_only]), "job1", expected)
    stranger = pl.Payload(dict(payloads[1].header, participant="w9"), payloads[1].files)
    with pytest.raises(ValueError, match=r"participant w9 is not a participant of this run"):
        check_payloads(_decoded([payloads[0], stranger]), "job1", expected)
    with pytest.raises(ValueError, match=r"participant w1 sent two payloads"):
        check_payloads(_decoded([payloads[0], payloads[1], payloads[1]]), "job1", expected)
    # a master that only orchestrates sends an empty payload, and may
    orchestrating = Participation("job1", MASTER, ("w1",), master_renders=False)
    alone = expected_of("film", "script-hash", outlines(SHOTS), orchestrating)
    empty = pl.Payload(dict(payloads[0].header, keyframes={}, files=[]), {})
    everything = _made(tmp_path / "alone", Participation("job1", "w1", ("w1",), master_renders=False),
                       split_shots(outlines(SHOTS), 1)[0], True)
    accepted, notes = check_payloads(_decoded([empty, everything]), "job1", alone)
    assert len(accepted) == 2 and not notes


@pytest.mark.parametrize("value", [0, 1, "false", "true", None, ["7", 0]])
def test_a_master_renders_that_is_not_a_boolean_refuses_the_distributed_run(value):
    """The host reads a BOOLEAN as ``bool(value)`` (0 off, "false" on): the on-prompt step takes no guess, and the
    nodes' validation refuses the prompt naming master_renders."""
    for is_worker in (False, True):
        prompt = annotate_prompt(_prompt(is_worker, master_renders=value))
        for node in ("2", "3", "10"):
            with pytest.raises(ValueError, match=r"distributed: master_renders of node 2 \(IdentityDiffusionRender\) "
                                                 r"must be true or false"):
                parse_participation(prompt[node]["inputs"]["distributed"])


def test_a_worker_named_like_the_master_refuses_the_distributed_run():
    """A worker whose ComfyUI-Distributed id is "master" would take the master's share into the master's journal
    (both render everything, the run never finishes): refused on the master and on that worker, naming the id."""
    master = _prompt(False)
    master["9"]["inputs"]["enabled_worker_ids"] = json.dumps(["w1", "master"])
    worker = _prompt(True)
    worker["9"]["inputs"].update(enabled_worker_ids=json.dumps(["w1", "master"]), worker_id="master")
    for prompt in (master, worker):
        value = annotate_prompt(prompt)["3"]["inputs"]["distributed"]
        with pytest.raises(ValueError, match=r"distributed: .*worker 'master' another id"):
            parse_participation(value)
    for people, renders in ((["master", "w1", "master"], True), (["w1", "master"], False)):
        with pytest.raises(ValueError, match=r"a worker's id is 'master'"):
            parse_participation(json.dumps({"format": 1, "job": "j", "me": "w1", "participants": people,
                                            "master_renders": renders}))


def _made_with(tmp, kind: str, key: str, master_digest, worker_digest):
    """The master's and w1's payloads, each entry of ``kind`` (keyframes or shots) carrying ``key`` (a digest the
    nodes put there: ``models``, ``plan``) as given (``None``: no such key, as entries of earlier versions)."""
    who = Participation("job1", MASTER, (MASTER, "w1"))
    shares = split_shots(outlines(SHOTS), 2)
    out = []
    for me, share, digest in ((who, shares[0], master_digest), (Participation("job1", "w1", who.participants),
                                                                 shares[1], worker_digest)):
        folder = MovieProject(str(tmp / ("gathered" if me.is_master else me.me)), "film", writer=me.writer)
        extra = {} if digest is None else {key: digest}
        for k in share.keyframes:
            folder.save_keyframe(k, np.full((4, 4, 3), k, np.uint8), f"sig{k}", extra if kind == "keyframes" else {})
        if kind == "shots":
            for s in share.shots:
                rel = folder.shot_file(s, f"s{s}")
                Path(folder.path(rel)).parent.mkdir(parents=True, exist_ok=True)
                Path(folder.path(rel)).write_bytes(b"shot %d" % s)
                folder.save_shot_sidecar(s, f"shot{s}", [])
                folder.record_shot(s, rel, f"shot{s}", {"shot": f"s{s}", "frames": 24, "backend": "animatic", **extra})
        out.append(share_payload(folder, me, share, send_files=not me.is_master, seconds={}, fps=12.0,
                                 project_name="film", script_hash="script-hash"))
    return _decoded(out), expected_of("film", "script-hash", outlines(SHOTS), who)


@pytest.mark.parametrize("kind, key, words", [
    ("keyframes", "models", r"rendered their keyframes with different models \(master with models aaaaaaaaaaaa; w1 with "
                            r"models bbbbbbbbbbbb\): give every instance the same model files"),
    ("keyframes", "plan", r"planned the movie differently \(master with plan aaaaaaaaaaaa; w1 with plan bbbbbbbbbbbb\): "
                          r"give every instance the same planner file"),
    ("shots", "models", r"animated their shots with different video models \(master with models aaaaaaaaaaaa; w1 with "
                        r"models bbbbbbbbbbbb\): give every instance the same video model files"),
])
def test_participants_that_made_their_share_differently_are_refused(tmp_path, kind, key, words):
    """Each keyframe's entry carries a digest of the models it was rendered with and one of its plan's makers (the
    planner file, script, encoders), each shot's one of its video models. A worker with another file under the same
    name made its share differently (audits: the movie came out different and nothing said so; another planner file or
    video model the same). Entries without a digest (earlier versions) are not compared; nothing is written."""
    payloads, expected = _made_with(tmp_path / "same", kind, key, "a" * 64, "a" * 64)
    assert len(check_payloads(payloads, "job1", expected)[0]) == 2
    payloads, expected = _made_with(tmp_path / "older", kind, key, "a" * 64, None)
    assert len(check_payloads(payloads, "job1", expected)[0]) == 2
    payloads, expected = _made_with(tmp_path / "other", kind, key, "a" * 64, "b" * 64)
    with pytest.raises(ValueError, match=r"results: the participants " + words):
        check_payloads(payloads, "job1", expected)
    assert not (tmp_path / "other" / "gathered" / "moviedreamer" / "film" / "keyframes" / "keyframe_00004.png").exists()
