"""The pure parts of distributed runs: the split, the participation input, the on-prompt step, the payload framing
and several writers sharing one project folder."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("name", ["../escape.png", "keyframes/../../x.png", "/etc/passwd", "shots/shot_1.mp4", "manifest.json"])
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
