"""Script -> ScriptEmbeds without a host: tiny real encoders, real files, real failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviedreamer_core.embeds import SEGMENTS
from moviedreamer_core.identity.base import FaceEmbedder, NoFaceFoundError
from moviedreamer_core.script import load_script
from moviedreamer_core.script_encoding import (
    ReferenceImageError,
    TextEncoder,
    TokenEncoder,
    encode_script,
)
from moviedreamer_core.spaces import EmbeddingSpace, TokenSpace

FIXTURES = Path(__file__).parent / "fixtures"


class ByteBagText(torch.nn.Module):
    """A tiny real sentence encoder: byte histogram through a fixed random projection. Counts its calls."""

    def __init__(self, dim: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(256, dim, generator=g), requires_grad=False)
        self.calls: list[list[str]] = []

    def forward(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        hist = torch.zeros(len(texts), 256)
        for i, t in enumerate(texts):
            for b in t.encode():
                hist[i, b] += 1
        return hist @ self.proj


class MeanColourFace(FaceEmbedder):
    """A real FaceEmbedder: mean colour per image quadrant; an almost black image has 'no face'."""

    space = EmbeddingSpace("test_mean_colour", 12)

    def __init__(self):
        self.calls = 0

    def _embed(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        if image.mean() < 5:
            raise NoFaceFoundError("no face")
        h, w = image.shape[0] // 2, image.shape[1] // 2
        quads = [image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:]]
        return np.concatenate([q.reshape(-1, 3).mean(0) for q in quads]) + 1.0


@pytest.fixture
def input_dir(tmp_path) -> Path:
    root = tmp_path / "input"
    root.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(40, 255, (64, 48, 3), dtype=np.uint8)).save(root / "ava.png")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "dark.png")
    return root


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1


def lighthouse(input_dir, images=1, text=None):
    return load_script(text or (FIXTURES / "lighthouse.yaml").read_text(), input_dir=str(input_dir), image_count=images)


def test_encodes_every_keyframe_segment_once_in_one_batch(input_dir, batch):
    script = lighthouse(input_dir, images=2)
    text = ByteBagText()
    embeds = encode_script(script, TextEncoder(text, EmbeddingSpace("bytes", 16)), MeanColourFace(),
                           input_dir=str(input_dir), batch=batch)
    assert len(text.calls) == 1, "all sentences go through the text encoder in one call"
    sent = text.calls[0]
    assert len(sent) == len(set(sent)), "each distinct sentence is encoded once"
    assert embeds.segments == SEGMENTS == ("action", "scene", "style")
    assert embeds.keyframe_text.shape == (3, 3, 16)
    # rows are the encoder's own vectors for the right sentences
    expected_action = text([script.keyframes()[2].action])[0]
    assert torch.allclose(embeds.keyframe_text[2, 0], expected_action)
    assert torch.allclose(embeds.keyframe_text[1, 1], embeds.keyframe_text[2, 1])  # same shot, same scene
    assert torch.allclose(embeds.keyframe_text[:, 2], embeds.style_embed.expand(3, -1))
    assert embeds.description_embeds.shape == (2, 16)
    assert embeds.keyframe_shot.tolist() == [0, 1, 1]


def test_identity_bank_and_mean(input_dir, batch):
    data = (FIXTURES / "lighthouse.yaml").read_text().replace("references: [0]", "references: [0, 1, ava.png]")
    script = lighthouse(input_dir, images=2, text=data)
    face = MeanColourFace()
    embeds = encode_script(script, TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)), face,
                           input_dir=str(input_dir), batch=batch)
    ava, bo = embeds.characters
    assert ava.bank.shape == (1, 12) and bo.bank.shape == (3, 12)
    assert bo.reference_names == ("batch:0", "batch:1", "file:ava.png")
    assert torch.allclose(bo.bank.norm(dim=1), torch.ones(3), atol=1e-5)
    assert abs(float(bo.mean.norm()) - 1.0) < 1e-5
    expected = torch.nn.functional.normalize(bo.bank.mean(0), dim=0)
    assert torch.allclose(bo.mean, expected, atol=1e-6)
    # Ava's file and Bo's third reference are the same photo: same embedding
    assert torch.allclose(ava.bank[0], bo.bank[2])
    assert embeds.identity_means().shape == (2, 12)
    assert embeds.identity_space == face.space


def test_character_without_references_has_no_identity(input_dir):
    data = (FIXTURES / "lighthouse.yaml").read_text().replace("references: [0]", "references: []")
    embeds = encode_script(lighthouse(input_dir, images=0, text=data), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                           MeanColourFace(), input_dir=str(input_dir))
    assert embeds.characters[0].has_identity and not embeds.characters[1].has_identity
    assert embeds.characters[1].bank.shape == (0, 12)
    assert torch.count_nonzero(embeds.characters[1].mean) == 0


def test_faceless_references_are_all_named(input_dir, batch):
    data = (FIXTURES / "lighthouse.yaml").read_text()
    data = data.replace("references: [ava.png]", "references: [ava.png, dark.png]").replace("references: [0]", "references: [0, 1]")
    batch = batch.clone()
    batch[1] = 0.0
    with pytest.raises(ReferenceImageError) as err:
        encode_script(lighthouse(input_dir, images=2, text=data), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                      MeanColourFace(), input_dir=str(input_dir), batch=batch)
    msg = str(err.value)
    assert "2 reference images" in msg
    assert 'character "Ava" (characters[0]), reference 1 (file:dark.png): no face found' in msg
    assert 'character "Bo" (characters[1]), reference 1 (batch:1): no face found' in msg
    assert "clip_vision_crop" in msg


def test_reference_tokens_and_spaces(input_dir, batch):
    proj = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))

    def tokens(images):
        return torch.stack([torch.from_numpy(im.reshape(-1, 3).mean(0).astype(np.float32)) @ proj for im in images]).reshape(-1, 2, 4)

    embeds = encode_script(lighthouse(input_dir, images=2), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                           MeanColourFace(), input_dir=str(input_dir), batch=batch,
                           token_encoder=TokenEncoder(tokens, TokenSpace("test.mean", 2, 4)))
    assert embeds.token_space == TokenSpace("test.mean", 2, 4)
    assert embeds.characters[0].reference_tokens.shape == (1, 2, 4)
    assert embeds.characters[1].reference_tokens.shape == (1, 2, 4)
    assert "tokens test.mean (K=2, D=4)" in embeds.summary()


def test_wrong_token_shape_is_an_error(input_dir, batch):
    with pytest.raises(RuntimeError, match=r"token encoder returned shape \(1, 8\), expected \[1, 2, 4\]"):
        encode_script(lighthouse(input_dir, images=2), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                      MeanColourFace(), input_dir=str(input_dir), batch=batch,
                      token_encoder=TokenEncoder(lambda ims: torch.zeros(len(ims), 8), TokenSpace("t", 2, 4)))


def test_content_hash_follows_inputs(input_dir, batch):
    def run(b):
        return encode_script(lighthouse(input_dir, images=2), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                             MeanColourFace(), input_dir=str(input_dir), batch=b)

    a, b = run(batch), run(batch.clone())
    assert a.content_hash == b.content_hash
    assert a.script_hash == b.script_hash
    changed = batch.clone()
    changed[0] = changed[0].flip(0)
    c = run(changed)
    assert c.content_hash != a.content_hash and c.script_hash == a.script_hash


def test_progress_reports_every_step(input_dir, batch):
    seen = []
    encode_script(lighthouse(input_dir, images=2), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                  MeanColourFace(), input_dir=str(input_dir), batch=batch, progress=lambda d, t: seen.append((d, t)))
    # two references + one text pass
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_renderer_prompt_names_who_is_on_screen(input_dir, batch):
    embeds = encode_script(lighthouse(input_dir, images=2), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                           MeanColourFace(), input_dir=str(input_dir), batch=batch)
    p = embeds.prompt(2)
    assert p.startswith("Close-up shot. Ava hands Bo a lantern. the lamp room at the top of the lighthouse.")
    assert embeds.prompt(0).startswith("Wide shot. Ava climbs the spiral staircase.")
    assert "Ava: a young woman with short red hair and a green raincoat." in p
    assert "Bo: an old fisherman with a white beard." in p
    assert p.endswith("hand-painted watercolour, soft morning light.")
    assert "Bo:" not in embeds.prompt(0)


def test_every_camera_reaches_the_renderer_prompt_as_film_words(input_dir, batch):
    """The script's camera of each shot is in the renderer's text, in words an SD model knows; a shot without one is
    the schema's default, a medium shot."""
    from moviedreamer_core.embeds import CAMERA_WORDS
    from moviedreamer_core.script.schema import Camera

    assert set(CAMERA_WORDS) == {c.value for c in Camera}
    assert all(w.endswith("shot") and "_" not in w for w in CAMERA_WORDS.values())
    shots = "\n".join(f"  - {{id: s{i}, scene: a room, action: Bo waits., camera: {c.value}, duration: 2}}"
                      for i, c in enumerate(Camera))
    script = load_script(f"title: T\nshots:\n{shots}\n  - {{id: plain, scene: a room, action: Bo waits., duration: 2}}\n",
                         input_dir=str(input_dir))
    embeds = encode_script(script, TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)), MeanColourFace(),
                           input_dir=str(input_dir), batch=batch)
    for k, c in enumerate(Camera):
        words = CAMERA_WORDS[c.value]
        assert embeds.prompt(k) == f"{words[0].upper()}{words[1:]}. Bo waits. a room.", embeds.prompt(k)
    assert embeds.prompt(len(Camera)).startswith("Medium shot. ")
    assert "Close-up shot." in embeds.prompt(list(Camera).index(Camera.close_up))


def test_report_flags_confusable_characters(input_dir, batch):
    from moviedreamer_core.script_report import identity_similarity, script_report

    # Bo's two photos: one is Ava's file, one a different image -> Bo is as close to Ava as to himself.
    data = (FIXTURES / "lighthouse.yaml").read_text().replace("references: [0]", "references: [ava.png, 0]")
    embeds = encode_script(lighthouse(input_dir, images=2, text=data), TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)),
                           MeanColourFace(), input_dir=str(input_dir), batch=batch)
    sims = identity_similarity(embeds)
    assert sims["Ava"]["self_min"] == 1.0 and sims["Ava"]["closest"] == "Bo"
    assert sims["Bo"]["self_min"] < 0.9999
    report = script_report(embeds, max_keyframes=2)
    assert "Bo: 2 photo(s)" in report and "WARNING" in report
    assert "#1 shot s2.0 [close_up] Ava, Bo: Bo turns to the door.\n" in report
    # an action naming a character the shot does not show is marked (script.check's note, in the node's report)
    away = encode_script(lighthouse(input_dir, images=2, text=data.replace("Ava climbs the spiral staircase.",
                                                                          "Ava climbs to Bo.")),
                         TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)), MeanColourFace(), input_dir=str(input_dir),
                         batch=batch)
    assert "#0 shot s1.0 [wide] Ava: Ava climbs to Bo.  <- names Bo, not on screen\n" in script_report(away, max_keyframes=2)
    assert "... 1 more keyframes" in report


def _counted(model):
    """``(calls, encode)``: ``encode`` runs ``model`` and appends how many sentences each call had to ``calls``."""
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return model(texts)

    return calls, encode


def test_a_long_script_is_encoded_in_chunks_and_a_cancel_between_them_stops_it():
    """A script of thousands of distinct sentences kept the text encoder busy a minute in one call, deaf to the host's
    Cancel (which ``progress`` raises). It is encoded ``TEXT_CHUNK`` sentences at a time with progress between, so a
    cancel stops it after the chunk under way; the vectors are the ones one call gives."""
    from moviedreamer_core.script_encoding import TEXT_CHUNK

    shots = [{"id": i, "scene": f"place {i}", "action": [f"Sentence {i}-{j}." for j in range(4)], "duration": 2}
             for i in range(300)]  # 1200 actions + 300 scenes + the style: three chunks
    script = load_script(json.dumps({"title": "Long", "characters": [], "shots": shots}))
    model = ByteBagText()
    calls, encode = _counted(model)

    text = TextEncoder(encode, EmbeddingSpace("bytes", 16))
    seen = []
    embeds = encode_script(script, text, MeanColourFace(), progress=lambda d, t: seen.append((d, t)))
    assert calls == [TEXT_CHUNK, TEXT_CHUNK, 1501 - 2 * TEXT_CHUNK]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    one_call = model([f"Sentence {i}-{j}." for i in range(300) for j in range(4)])
    assert torch.equal(embeds.keyframe_text[:, SEGMENTS.index("action")], one_call)

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    calls.clear()
    with pytest.raises(Cancelled):
        encode_script(script, text, MeanColourFace(), progress=cancel)
    assert calls == [TEXT_CHUNK]


def test_an_encoder_of_sentences_one_by_one_is_called_a_few_at_a_time_so_cancel_answers_soon():
    """The built-in MiniLM encodes each sentence by itself (``per_sentence``), some 20 ms each: 512 a call kept the
    host's Cancel waiting 48 s on a busy machine (an audit). Such an encoder is called ``SENTENCE_CHUNK`` sentences at
    a time (its vectors the same however they are split); a batched encoder still gets ``TEXT_CHUNK``."""
    from moviedreamer_core.script_encoding import SENTENCE_CHUNK, TEXT_CHUNK

    assert SENTENCE_CHUNK <= 32 < TEXT_CHUNK
    shots = [{"id": i, "scene": "the harbour", "action": [f"Sentence {i}-{j}." for j in range(4)], "duration": 2}
             for i in range(50)]  # 200 actions + 1 scene + the style: 202 sentences
    script = load_script(json.dumps({"title": "Long", "characters": [], "shots": shots}))
    model = ByteBagText()
    calls, encode = _counted(model)

    one_by_one = TextEncoder(encode, EmbeddingSpace("bytes", 16), per_sentence=True)
    embeds = encode_script(script, one_by_one, MeanColourFace())
    assert calls == [SENTENCE_CHUNK] * (202 // SENTENCE_CHUNK) + [202 % SENTENCE_CHUNK]
    assert torch.equal(embeds.keyframe_text[:, SEGMENTS.index("action")],
                       model([f"Sentence {i}-{j}." for i in range(50) for j in range(4)]))
    calls.clear()
    encode_script(script, TextEncoder(encode, EmbeddingSpace("bytes", 16)), MeanColourFace())
    assert calls == [202]


def test_the_built_in_sentence_encoder_says_it_encodes_sentences_one_by_one():
    """ScriptEncode's built-in MiniLM (``alone=True``) is the encoder called a few sentences at a time; batched it is
    not (its vectors move in their last bits with the call's other sentences)."""
    from moviedreamer_core.sentence_encoders import minilm_folder, transformers_text_encoder

    alone = transformers_text_encoder(minilm_folder(), alone=True)
    assert alone.per_sentence and not transformers_text_encoder(minilm_folder()).per_sentence
    sentences = [f"Ava walks to the harbour {i}." for i in range(40)]
    assert torch.equal(alone.encode(sentences), torch.cat([alone.encode(sentences[:7]), alone.encode(sentences[7:])]))


def test_references_naming_one_batch_image_many_times_convert_and_embed_it_once(batch):
    """``references: [0]`` is accepted 16 times for each of 256 characters: the batch image was converted (and
    embedded) once per reference, 1.5 GB and 45 s for a 512 px image (an audit). Each batch image is now converted once
    and each picture embedded once; the characters' banks are as before."""
    from moviedreamer_core.script_encoding import gather_references

    characters = [{"name": f"C{c}", "description": "a sailor", "references": [0] * 16} for c in range(40)]
    shots = [{"id": 1, "scene": "the harbour", "action": "C0 waits.", "characters": ["C0"], "duration": 2}]
    script = load_script(json.dumps({"title": "Many", "characters": characters, "shots": shots}), image_count=2)
    refs = gather_references(script, None, batch)
    assert len(refs) == 640 and len({id(r.image) for r in refs}) == 1
    face = MeanColourFace()
    token_calls = []

    def tokens(images):
        token_calls.append(len(images))
        return torch.stack([torch.full((1, 4), float(im.mean())) for im in images])

    embeds = encode_script(script, TextEncoder(ByteBagText(), EmbeddingSpace("bytes", 16)), face, batch=batch,
                           token_encoder=TokenEncoder(tokens, TokenSpace("mean", 1, 4)))
    assert face.calls == 1
    assert all(ch.bank.shape == (16, 12) for ch in embeds.characters)
    assert torch.equal(embeds.characters[39].bank[15], embeds.characters[0].bank[0])
    # the reference tokens too: characters with the very same pictures share one encoding (4096 before; a review)
    assert token_calls == [16] and all(torch.equal(ch.reference_tokens, embeds.characters[0].reference_tokens)
                                       for ch in embeds.characters)


def test_a_batch_image_larger_than_a_reference_photo_may_be_is_refused(batch, monkeypatch):
    """A reference file is refused above ``MAX_REFERENCE_PIXELS``; an image of the IMAGE batch was not checked at all."""
    from moviedreamer_core import script_encoding

    monkeypatch.setattr(script_encoding, "MAX_REFERENCE_PIXELS", 40 * 40 - 1)
    shots = [{"id": 1, "scene": "the harbour", "action": "Ava waits.", "characters": ["Ava"], "duration": 2}]
    script = load_script(json.dumps({"title": "Big", "characters": [{"name": "Ava", "description": "a sailor", "references": [1]}], "shots": shots}),
                         image_count=2)
    with pytest.raises(ReferenceImageError, match=r'characters\[0\] "Ava": references\[0\] is image 1 of the IMAGE batch, '
                                                  r"40x40 pixels: more than 0 megapixels"):
        script_encoding.gather_references(script, None, batch)
