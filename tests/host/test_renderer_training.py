"""Training the renderer adapter on a frozen tiny host UNet: the loss falls and the output comes to depend
on the tokens (MovieDreamer sections 3.2, 3.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.renderer.train import (RendererBatch, augment_images, predict_clean, randomise_identity, renderer_loss,
                                              train_step)


def test_adapter_learns_to_decode_tokens(host):
    testing = host.pack_submodule("tests.host.tiny_nodes")
    patching = host.pack_submodule("nodes.attention_patch")
    hostmod = host.pack_submodule("nodes.host")
    training = host.pack_submodule("nodes.renderer_training")
    torch.manual_seed(0)
    model = testing.tiny_sd(3)
    layers = patching.discover_cross_attention(model)
    adapter = RendererAdapter(RendererConfig(token_space={"source": "t", "K": 1, "D": 8}, context_dim=64,
                                             layer_dims=[l.inner_dim for l in layers], context_tokens=4,
                                             identity_space={"encoder": "i", "dim": 8}, identity_tokens=2))
    denoise = training.make_denoiser(model, hostmod.managed(adapter))

    # Two kinds of keyframe whose latents differ only in a pattern that the text does not describe:
    # the token says which one it is. Same text for both.
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(2, 4, 8, 8, generator=g)
    tokens = torch.randn(2, 1, 8, generator=g) * 2
    text = torch.randn(1, 6, 64, generator=g)
    ids = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)

    def batch(kinds):
        return RendererBatch(latents=patterns[kinds], tokens=tokens[kinds], text_context=text.expand(len(kinds), -1, -1),
                             identities=ids[kinds])

    eval_kinds = torch.tensor([0, 1, 0, 1])
    eval_sigma = torch.tensor([1.0, 1.0, 3.0, 3.0])
    eval_noise = torch.randn(4, 4, 8, 8, generator=g)

    def eval_loss(swap=False):
        b = batch(eval_kinds)
        if swap:
            b = RendererBatch(b.latents, tokens[1 - eval_kinds], b.text_context, ids[1 - eval_kinds])
        with torch.no_grad():
            return float(renderer_loss(adapter, b, denoise, eval_sigma, eval_noise))

    before = eval_loss()
    opt = torch.optim.AdamW(adapter.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(150):
        kinds = torch.randint(0, 2, (4,), generator=gen)
        train_step(adapter, batch(kinds), denoise, opt, sigma_range=(0.5, 4.0), identity_noise=0.05, generator=gen)
    after, after_swapped = eval_loss(), eval_loss(swap=True)
    assert after < 0.5 * before, (before, after)
    # after training the right token (and identity) decodes better than the other keyframe's
    assert after_swapped > 1.03 * after, (after, after_swapped)
    assert all(p.grad is None for p in model.model.parameters()), "the UNet stays frozen"


# ------------------------------------------------------------------- parity with the host's own sampler


def _keyframes(n: int = 2, h: int = 48, w: int = 64) -> torch.Tensor:
    """Smooth synthetic pictures (a ComfyUI IMAGE, non-square so that width and height cannot be swapped)."""
    g = torch.Generator().manual_seed(3)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    rows = []
    for _ in range(n):
        a = torch.rand(3, 3, generator=g)
        rows.append(torch.stack([a[c, 0] * ys + a[c, 1] * xs + a[c, 2] * (xs * ys) for c in range(3)], -1).clamp(0, 1))
    return torch.stack(rows)


def _host_first_step(host, model, vae, clip, image, text, sigma, noise):
    """The clean latents the host's sampler predicts at ``sigma`` for ``image`` noised with ``noise``: the host's own
    nodes and sampler machinery (VAEEncode, CLIPTextEncode, ``comfy.sample.sample_custom`` as SamplerCustom drives
    it: ``CFGGuider`` -> ``process_latent_in`` -> ``noise_scaling`` -> ``extra_conds`` -> ``calc_cond_batch``) with a
    one-step sampler that returns the model's first prediction. Independent of the pack's training code."""
    import comfy.sample
    import comfy.samplers

    latent = host.nodes.VAEEncode().encode(vae, image)[0]["samples"]
    positive = host.nodes.CLIPTextEncode().encode(clip, text)[0]
    negative = host.nodes.CLIPTextEncode().encode(clip, "")[0]  # unused at cfg 1, as in KSampler

    def first_prediction(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return model_k(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)

    out = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.KSAMPLER(first_prediction),
                                     torch.tensor([float(sigma), 0.0]), positive, negative, latent, disable_pbar=True, seed=0)
    return model.model.process_latent_in(out)  # the sampler hands back process_latent_out(prediction)


@pytest.mark.parametrize("layout", ["sd15", "sdxl"])
def test_training_predicts_what_the_hosts_sampler_predicts(host, testing, patching, layout):
    """The renderer-training denoiser, fed the samples the training node encodes (latents, captions), predicts for
    a noisy latent exactly what the host's sampler computes for the same latent, sigma, noise and conditioning:
    with the adapter's weights at zero against the plain host path, and with trained-looking weights against the
    render path's patch. On the SD1.5 latent format (x0.18215) and on a real ``comfy.model_base.SDXL`` (x0.13025,
    its ADM input from the pooled text and the image size)."""
    from moviedreamer_core.renderer.fit import collate

    node = host.pack_submodule("nodes.renderer_train_node")
    training = host.pack_submodule("nodes.renderer_training")
    hostmod = host.pack_submodule("nodes.host")
    model = testing.tiny_sd(2) if layout == "sd15" else testing.tiny_sdxl(2)
    assert model.model.latent_format.scale_factor == (0.18215 if layout == "sd15" else 0.13025)
    vae, clip, vision = testing.tiny_vae(0, latent_std=5.0), testing.tiny_clip(0), testing.tiny_clip_vision(0)
    images = _keyframes()
    texts = ["a red fox in the snow", "a lighthouse at night"]
    embedder = host.pack_submodule("nodes.face_embedders").make_face_embedder("clip_vision_crop", vision)
    samples, _ = node.encode_training_samples(model, vae, clip, vision, images, texts, embedder)
    assert (samples[0].pooled is not None) and samples[0].pooled.shape == (64,)
    layers = patching.discover_cross_attention(model)
    adapter = RendererAdapter(RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": 32},
                                             context_dim=64, layer_dims=[l.inner_dim for l in layers], context_tokens=4))
    managed = hostmod.managed(adapter)
    batch, _ = collate(samples, None)
    sigmas = torch.tensor([0.7, 4.0])
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(batch.latents.shape, generator=g)
    assert 0.3 < float(batch.latents.std()) < 3.0  # latents in the scale the model denoises (about 1)

    def training_prediction(i=None):
        """Training's own prediction (``predict_clean``, as ``renderer_loss`` scores it) for keyframe ``i`` alone,
        as the sampler renders one keyframe, or for the whole batch."""
        rows = slice(None) if i is None else slice(i, i + 1)
        part = RendererBatch(batch.latents[rows], batch.tokens[rows], batch.text_context[rows], pooled=batch.pooled[rows]
                             if batch.pooled is not None else None)
        return predict_clean(adapter, part, training.make_denoiser(model, managed), sigmas[rows], noise[rows])

    def render_path(i):
        """The render node's patch for keyframe ``i`` (its tokens on the conditional pass)."""
        state = patching.AdapterState(managed, layers, adapter.project_tokens(batch.tokens[i:i + 1]),
                                      adapter.project_tokens(torch.zeros_like(batch.tokens[:1])), None, 1.0, 0.0,
                                      float("inf"), 0.0)
        return patching.patch_model(model, state)

    with torch.no_grad():
        hostmod.load_managed(model)
        for weights in ("zero", "trained-looking"):
            for p in adapter.parameters():
                p.copy_(torch.zeros_like(p) if weights == "zero" else torch.randn(p.shape, generator=g) * 0.3)
            alone = []
            for i in range(2):
                # zero weights: the plain host path; other weights: the render path's patch on the host's sampler
                sampled = model if weights == "zero" else render_path(i)
                expected = _host_first_step(host, sampled, vae, clip, images[i:i + 1], texts[i], sigmas[i], noise[i:i + 1])
                alone.append(training_prediction(i))
                torch.testing.assert_close(alone[-1], expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{weights}, {i}: {m}")
            # a training batch predicts each row as it predicts that row alone, up to float32 rounding (another batch
            # size sums in another order: a few 1e-6 of the largest value)
            alone = torch.cat(alone)
            torch.testing.assert_close(training_prediction(), alone, rtol=1e-5, atol=1e-5 * float(alone.abs().max()))
        plain = _host_first_step(host, model, vae, clip, images[:1], texts[0], sigmas[0], noise[:1])
        assert (alone[:1] - plain).abs().max() > 1e-2, "the adapter's weights reach the prediction"


def test_augmentation_and_identity_randomisation():
    images = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    out = augment_images(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert not torch.equal(out, images)
    ids = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    r = randomise_identity(ids, 0.0, torch.Generator().manual_seed(0), banks=[bank, None])
    assert any(torch.allclose(r[0], row) for row in bank) and torch.allclose(r[1], ids[1])
    noisy = randomise_identity(ids, 0.1, torch.Generator().manual_seed(0))
    assert torch.allclose(noisy.norm(dim=1), torch.ones(2)) and not torch.allclose(noisy, ids)


# ------------------------------------------------------------------------------------ the training node


def train_graph(save_name: str, steps: int, seed: int = 0) -> dict:
    """Two keyframes (two real faces) at 64x64 through MovieDreamerTrainRenderer on the tiny host models."""
    return {
        "1": {"class_type": "MovieDreamerTestTinyCLIP", "inputs": {"seed": 0}},
        "5": {"class_type": "MovieDreamerTestTinyCLIPVision", "inputs": {"seed": 0}},
        "9": {"class_type": "MovieDreamerTestTinySD", "inputs": {"seed": 0}},
        "20": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "21": {"class_type": "LoadImage", "inputs": {"image": "hopper.png"}},
        "22": {"class_type": "ImageScale", "inputs": {"image": ["20", 0], "upscale_method": "area", "width": 64,
                                                       "height": 64, "crop": "center"}},
        "23": {"class_type": "ImageScale", "inputs": {"image": ["21", 0], "upscale_method": "area", "width": 64,
                                                       "height": 64, "crop": "center"}},
        "24": {"class_type": "ImageBatch", "inputs": {"image1": ["22", 0], "image2": ["23", 0]}},
        "30": {"class_type": "MovieDreamerTrainRenderer", "inputs": {
            "model": ["9", 0], "vae": ["9", 1], "clip": ["1", 0], "clip_vision": ["5", 0], "images": ["24", 0],
            "captions": "a portrait", "face_embedder": "clip_vision_crop", "token_source": "image_embeds",
            "steps": steps, "batch_size": 4, "learning_rate": 1e-2, "augmentations": 1, "identity_noise": 0.02,
            "context_tokens": 4, "identity_tokens": 2, "seed": seed, "save_name": save_name}},
        "31": {"class_type": "PreviewImage", "inputs": {"images": ["30", 1]}},
    }


def test_training_node_learns_and_saves_a_renderer_the_loader_lists(host, photos):
    from moviedreamer_core.renderer import load_renderer

    result = host.run(train_graph("tiny_trained", steps=300))
    assert result.success, result.error_text()
    text = result.outputs["30"]["text"][0]
    assert text.startswith("tiny_trained.safetensors: 300 steps on 4 samples (2 images x 2); 4 with a face"), text
    first, last = (float(v) for v in text.rsplit("evaluation loss ", 1)[1].split(" -> "))
    assert last < 0.8 * first, text  # the tiny UNet's irreducible error is large; 300 steps take it from 1.0 to ~0.76
    progress = [d["value"] for d in result.events("progress") if d["node"] == "30"]
    assert progress[-1] == 4 + 300
    folder = host.folder_paths.get_folder_paths("moviedreamer")[0]
    adapter = load_renderer(f"{folder}/tiny_trained.safetensors")
    assert adapter.cfg.identity_space["encoder"].startswith("clip_vision_crop:") and adapter.cfg.tokens.K == 1
    host.folder_paths.filename_list_cache.clear()
    assert "tiny_trained.safetensors" in host.pack_submodule("nodes.render_nodes").renderer_files()
    bad = train_graph("../escape", steps=1)
    escaped = host.run(bad)
    assert escaped.success and "escape.safetensors" in escaped.outputs["30"]["text"][0]  # the name is made safe


def test_a_save_name_that_would_replace_or_hide_another_file_is_refused_before_training(host, testing, photos, tmp_path):
    """A training's save_name replaced a planner of models/moviedreamer without a word, and one named like a file of
    another models/moviedreamer folder (the toy cinema's planner) was saved in the first folder, where it hid that
    file from the loaders for every later prompt (an audit). Both are refused when the prompt is validated (and by the
    training function the command uses); saving over a renderer of the same name, a training run again, is not."""
    from safetensors.torch import save_file

    from moviedreamer_core.planner import KeyframePlanner, preset, save_planner

    first = Path(host.folder_paths.get_folder_paths("moviedreamer")[0])
    first.mkdir(parents=True, exist_ok=True)
    other = tmp_path / "other_models"
    other.mkdir()
    planner = first / "md_test_planner.safetensors"
    save_planner(KeyframePlanner(preset("tiny")), str(planner))
    save_file({"x": torch.zeros(2)}, str(first / "md_test_other.safetensors"))
    save_file({"x": torch.zeros(2)}, str(other / "md_test_elsewhere.safetensors"))
    before = planner.read_bytes()
    try:
        with host.model_folder("moviedreamer", other):
            for name, words in (("md_test_planner", "is a MovieDreamer planner file: saving would replace it"),
                                ("md_test_other.safetensors", "is a file that is not a MovieDreamer renderer"),
                                ("md_test_elsewhere", f"is the name of {other / 'md_test_elsewhere.safetensors'}: saved in "
                                                      f"{first} (where new files go) it would hide that file")):
                refused = host.run(train_graph(name, steps=1))
                assert not refused.valid and "30" in refused.node_errors, refused.error_text()
                assert "save_name: " in refused.error_text() and words in refused.error_text(), refused.error_text()
                with pytest.raises(ValueError, match="save_name: .*" + words.split(":")[0].replace(".", r"\.")):
                    _train_eight_steps(host, testing, photos, name)
            assert planner.read_bytes() == before and not (first / "md_test_elsewhere.safetensors").exists()
            _train_eight_steps(host, testing, photos, "md_test_renderer")
            _train_eight_steps(host, testing, photos, "md_test_renderer")  # a renderer trained again under its name
    finally:
        for leftover in first.glob("md_test_*"):
            leftover.unlink()
        host.folder_paths.filename_list_cache.clear()


def test_training_script_imports_the_host_as_a_library(host, photos, tmp_path, fresh_python):
    """The script's own steps: the keyframe folder (captions from .txt files) and the node's training function
    on the tiny host models; then the script itself, in a fresh process, bootstrapping ComfyUI from its folder."""
    from PIL import Image

    cli = host.pack_submodule("cli.train_renderer")
    testing = host.pack_submodule("tests.host.tiny_nodes")
    folder = tmp_path / "keyframes"
    folder.mkdir()
    Image.open(photos / "astronaut.png").save(folder / "a.png")
    Image.open(photos / "hopper.png").convert("RGB").save(folder / "b.jpg")
    (folder / "a.txt").write_text("an astronaut in a spacesuit\n")
    images, captions = cli.load_keyframes(str(folder), (64, 48), "a portrait")
    assert tuple(images.shape) == (2, 48, 64, 3) and captions == ["an astronaut in a spacesuit", "a portrait"]
    assert cli.load_characters(str(folder)) is None  # no character sub-folders: faces are clustered
    cast = tmp_path / "cast"
    for who, photo in (("Grace", "hopper.png"), ("Grace", "astronaut.png"), ("Eileen", "astronaut.png")):
        (cast / who).mkdir(parents=True, exist_ok=True)
        Image.open(photos / photo).save(cast / who / f"{len(list((cast / who).iterdir()))}.png")
    Image.open(photos / "coffee.png").save(cast / "coffee.png")
    assert cli.load_characters(str(cast)) == ["", "Eileen", "Grace", "Grace"]
    assert cli.load_keyframes(str(cast), (32, 32))[0].shape[0] == 4
    train = host.pack_submodule("nodes.renderer_train_node").train_renderer
    steps = []
    model = testing.tiny_sd(0)
    handle, curve, text = train(model, testing.tiny_vae(0), testing.tiny_clip(0), testing.tiny_clip_vision(0), images,
                                captions, face_embedder="clip_vision_crop", steps=5, batch_size=2, learning_rate=1e-3,
                                augmentations=0, save_name="from_script", on_step=lambda s, n, loss: steps.append(s))
    assert steps == [1, 2, 3, 4, 5] and text.startswith("from_script.safetensors: 5 steps on 2 samples")
    assert (Path(host.folder_paths.get_folder_paths("moviedreamer")[0]) / "from_script.safetensors").is_file()

    # the README's command from the pack's folder, in a fresh interpreter
    helped = fresh_python.run("python cli/train_renderer.py --help", timeout=60)
    assert helped.returncode == 0 and "--checkpoint" in helped.stdout
    missing = fresh_python.run(f"python cli/train_renderer.py --comfyui {host.root} --checkpoint nowhere.safetensors "
                               f"--clip-vision x.safetensors --images {folder}", "--cpu", timeout=300)
    assert missing.returncode != 0
    assert 'checkpoints file "nowhere.safetensors" not found in models/checkpoints' in missing.stderr, missing.stderr[-2000:]


@pytest.fixture(scope="session")
def real_format_models(host, tmp_path_factory):
    """An SD1.5 checkpoint and a ViT-L CLIP Vision file that the host's own loaders detect (random weights, the
    smallest sizes they accept: ``tests/host/tiny_nodes.py``)."""
    testing = host.pack_submodule("tests.host.tiny_nodes")
    folder = tmp_path_factory.mktemp("real_format")
    return {"checkpoint": testing.write_sd15_checkpoint(str(folder / "sd15_small.safetensors")),
            "clip_vision": testing.write_clip_vision_vitl(str(folder / "clip_vision_vitl.safetensors"))}


@pytest.mark.slow
def test_renderer_training_command_trains_on_a_checkpoint_the_host_loads(host, photos, real_format_models, tmp_path,
                                                                          fresh_python):
    """The README's ``python cli/train_renderer.py ...`` end to end in a fresh interpreter: the host loads the
    checkpoint and CLIP Vision with its own loaders, the renderer trains, and its file lands in ``--save-dir`` (a
    folder that does not exist yet, so that the test writes nothing into the host's models folder)."""
    from PIL import Image

    from moviedreamer_core.renderer import read_renderer_config

    folder = tmp_path / "my_keyframes"
    folder.mkdir()
    Image.open(photos / "astronaut.png").convert("RGB").save(folder / "a.png")
    Image.open(photos / "hopper.png").convert("RGB").save(folder / "b.jpg")
    (folder / "a.txt").write_text("an astronaut in a spacesuit\n")
    save_dir = tmp_path / "new" / "moviedreamer"
    proc = fresh_python.run(
        f"python cli/train_renderer.py --comfyui {host.root} --checkpoint {real_format_models['checkpoint']} "
        f"--clip-vision {real_format_models['clip_vision']} --images {folder}/ --size 64x64 --steps 2 --batch-size 2 "
        f"--learning-rate 1e-4 --save-name my_renderer", "--cpu", "--augmentations", "0",
        "--save-dir", str(save_dir), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    written = save_dir / "my_renderer.safetensors"
    assert proc.stdout.strip().splitlines()[-1] == str(written), proc.stdout
    config = read_renderer_config(str(written))
    assert config.tokens.source == "clip_vision.image_embeds" and config.tokens.D == 768
    assert config.context_dim == 768  # SD1.5's text width: the renderer is made for this checkpoint's UNet


@pytest.mark.slow
def test_the_training_command_stopped_by_ctrl_c_says_at_once_that_it_continues(host, photos, real_format_models,
                                                                              tmp_path, fresh_python):
    """``cli/train_renderer.py`` stopped by a real SIGINT after a step (exit 130, state kept), then the same command:
    it said that it continued only in its summary at the end, its progress lines simply began at a later step (an
    audit). It now says so before the first of them."""
    from PIL import Image

    folder = tmp_path / "my_keyframes"
    folder.mkdir()
    Image.open(photos / "astronaut.png").convert("RGB").save(folder / "a.png")
    Image.open(photos / "hopper.png").convert("RGB").save(folder / "b.jpg")
    command = ["python", "cli/train_renderer.py", "--comfyui", str(host.root), "--checkpoint",
               str(real_format_models["checkpoint"]), "--clip-vision", str(real_format_models["clip_vision"]),
               "--images", f"{folder}/", "--size", "64x64", "--steps", "6", "--batch-size", "2", "--learning-rate",
               "1e-4", "--save-name", "stopped", "--cpu", "--augmentations", "0", "--save-dir", str(tmp_path / "models")]
    lines = []

    def ready(proc):  # after the second step's line
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("step 2/6"):
                return
        raise AssertionError("".join(lines)[-3000:])

    code, rest = fresh_python.ctrl_c(command, ready, timeout=600)
    assert code == 130, "".join(lines)[-3000:] + rest[-3000:]
    stopped = int(rest.split("stopped after step ")[1].split(" ")[0])
    again = fresh_python.run(command, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    said = [line for line in again.stderr.splitlines() if line.startswith(("continued", "step "))]
    assert said[0] == (f"continued from step {stopped}: the state an interrupted run kept beside the renderer file"), said
    assert said[1].startswith(f"step {stopped + 1}/6") and said[-1].startswith("step 6/6"), said


def _photos_64(photos, names) -> torch.Tensor:
    from PIL import Image, ImageOps

    rows = []
    for name in names:
        mirrored = name.endswith(":mirrored")
        with Image.open(photos / name.removesuffix(":mirrored")) as im:
            im = ImageOps.fit(im.convert("RGB"), (64, 64))
        rows.append(torch.from_numpy(np.array(ImageOps.mirror(im) if mirrored else im)).float().div(255))
    return torch.stack(rows)


def test_training_draws_each_identity_from_another_photo_of_the_character(host, testing, photos):
    """The paper's face-embedding randomisation: with two photos of Grace, each Grace sample's identity bank is
    the other photo's identities (both its augmented variants); Eileen, with one photo, keeps her own (noise
    only). The names come from the node's ``characters`` input; the node's summary says what it did."""
    node = host.pack_submodule("nodes.renderer_train_node")
    vision = testing.tiny_clip_vision(0)
    images = _photos_64(photos, ["astronaut.png", "hopper.png", "hopper.png:mirrored"])
    names = node.character_names("Eileen\nGrace\nGrace\n", 3)
    assert names == ["Eileen", "Grace", "Grace"] and node.character_names("Grace", 2) == ["Grace", "Grace"]
    assert node.character_names(" \n", 3) is None and node.character_names("A\n-\nB", 3) == ["A", "", "B"]
    with pytest.raises(ValueError, match="one line per image \\(3 images\\), or a single name for all; got 2 lines"):
        node.character_names("A\nB", 3)
    embedder = host.pack_submodule("nodes.face_embedders").make_face_embedder("clip_vision_crop", vision)
    samples, counts = node.encode_training_samples(
        testing.tiny_sd(0), testing.tiny_vae(0, latent_std=5.0), testing.tiny_clip(0), vision, images, ["a portrait"] * 3,
        embedder, augmentations=1, generator=torch.Generator().manual_seed(0), characters=names)
    assert counts == {"found": 6, "characters": 1, "banked": 4, "lent": 0, "reused": False}
    by_photo = {p: [samples[v * 3 + p] for v in range(2)] for p in range(3)}  # variant-major order
    assert all(s.bank is None for s in by_photo[0]), "Eileen has no other photo"
    for mine, other in ((1, 2), (2, 1)):
        expected = torch.stack([s.identity for s in by_photo[other]])
        for s in by_photo[mine]:
            assert torch.equal(s.bank, expected)
            assert not any(torch.allclose(s.identity, b) for b in s.bank), "never the photo's own identity"

    graph = train_graph("grouped", steps=2)
    graph["25"] = {"class_type": "ImageScale", "inputs": {"image": ["21", 0], "upscale_method": "area", "width": 64,
                                                           "height": 64, "crop": "center"}}
    graph["26"] = {"class_type": "ImageFlip", "inputs": {"image": ["25", 0], "flip_method": "y-axis: horizontally"}}
    graph["27"] = {"class_type": "ImageBatch", "inputs": {"image1": ["24", 0], "image2": ["26", 0]}}
    graph["30"]["inputs"].update(images=["27", 0], characters="Eileen\nGrace\nGrace")
    result = host.run(graph)
    assert result.success, result.error_text()
    text = result.outputs["30"]["text"][0]
    assert "; identity from another photo of the character for 4 samples (1 character); evaluation loss" in text, text


def test_training_leaves_torchs_global_generator_alone(host, testing, photos):
    """Every random draw of renderer training (augmentations, the new adapter's initialisation, batches, noise)
    comes from the node's seed through local generators: the process's global generator, which other nodes and
    the host use, is in the same state after training as before."""
    train = host.pack_submodule("nodes.renderer_train_node").train_renderer
    images = _photos_64(photos, ["astronaut.png", "hopper.png"])
    models = (testing.tiny_sd(0), testing.tiny_vae(0), testing.tiny_clip(0), testing.tiny_clip_vision(0))
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    _, _, first = train(*models, images, ["a portrait"] * 2, face_embedder="clip_vision_crop", steps=2, batch_size=2,
                        augmentations=1, save_name="rng_check", seed=3)
    assert torch.equal(torch.get_rng_state(), before), "renderer training moved torch's global generator"
    torch.manual_seed(99)  # another global state: the same seed still trains the same renderer
    _, _, second = train(*models, images, ["a portrait"] * 2, face_embedder="clip_vision_crop", steps=2, batch_size=2,
                         augmentations=1, save_name="rng_check", seed=3)
    assert first == second


def test_the_training_command_takes_exactly_the_numbers_the_node_takes(host):
    """``cli/train_renderer.py`` runs the node's training, so each number flag has the node's default and range, as
    the host registered the node (``GET_SCHEMA``): the limits are accepted, one step past them refused."""
    cli = host.pack_submodule("cli.train_renderer")
    schema = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerTrainRenderer"].GET_SCHEMA()
    inputs = {i.id: i for i in schema.inputs}
    required = ["--checkpoint", "c", "--clip-vision", "v", "--images", "."]
    defaults = cli.parse_args(required)
    numbers = [n for n, i in inputs.items() if getattr(i, "min", None) is not None and n != "seed"]
    assert set(numbers) == {"steps", "batch_size", "learning_rate", "augmentations", "identity_noise", "context_tokens",
                            "identity_tokens", "character_threshold"}
    for name in numbers:
        node = inputs[name]
        flag = "--" + name.replace("_", "-")
        assert getattr(defaults, name) == node.default, name
        for value in (node.min, node.max):
            assert getattr(cli.parse_args(required + [flag, repr(value)]), name) == value, (name, value)
        for value in (node.min - (1 if isinstance(node.min, int) else 1e-9), node.max + (1 if isinstance(node.max, int) else 1e-3)):
            with pytest.raises(SystemExit):
                cli.parse_args(required + [flag, repr(value)])


def test_the_training_command_offers_exactly_the_choices_the_node_offers(host):
    """Each of the node's combo inputs is a flag of ``cli/train_renderer.py`` with the same options and default (the
    command once lacked the ``toycinema`` face embedder the node offers); anything else is refused."""
    cli = host.pack_submodule("cli.train_renderer")
    schema = host.nodes.NODE_CLASS_MAPPINGS["MovieDreamerTrainRenderer"].GET_SCHEMA()
    combos = {i.id: i for i in schema.inputs if getattr(i, "options", None)}
    assert set(combos) == {"face_embedder", "token_source"}
    required = ["--checkpoint", "c", "--clip-vision", "v", "--images", "."]
    defaults = cli.parse_args(required)
    for name, node in combos.items():
        flag = "--" + name.replace("_", "-")
        assert getattr(defaults, name) == node.default, name
        for option in node.options:
            assert getattr(cli.parse_args(required + [flag, option]), name) == option
        with pytest.raises(SystemExit):
            cli.parse_args(required + [flag, "nothing_like_it"])


def test_a_cancelled_training_is_continued_by_the_next_run_and_ends_as_the_uninterrupted_one(host, testing, photos):
    """The host's Cancel (``interrupt_current_processing``) stops the training node between two steps; its state is
    kept beside the renderer file (a name no loader lists) and the next run of the same training continues it: the
    same file as a run never cancelled, byte for byte in its weights. The state is removed once the file is saved."""
    import comfy.model_management
    from safetensors.torch import load_file

    from moviedreamer_core.renderer.fit_state import state_path
    from moviedreamer_core.renderer.sample_cache import samples_path

    folder = Path(host.folder_paths.get_folder_paths("moviedreamer")[0])
    encodes = []  # CLIP Vision's encodes, counted as they happen: the face embedder's size probe, then each photo's
    # tokens and its face crop

    def run(name, on_step=None):
        vision = testing.tiny_clip_vision(0)
        encode = vision.encode_image
        vision.encode_image = lambda *a, **k: (encodes.append(name), encode(*a, **k))[1]
        return _train_eight_steps(host, testing, photos, name, on_step, clip_vision=vision)

    _, _, whole = run("never_cancelled")
    steps = []

    def cancel_after_three(step, total, loss):
        steps.append(step)
        if step == 3:
            comfy.model_management.interrupt_current_processing(True)  # the Cancel button; the next step stops

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run("cancelled", cancel_after_three)
    assert steps == [1, 2, 3] and not (folder / "cancelled.safetensors").exists()
    state = Path(state_path(str(folder / "cancelled.safetensors")))
    samples = Path(samples_path(str(folder / "cancelled.safetensors")))
    assert state.is_file() and samples.is_file() and encodes.count("cancelled") == 1 + 2 * 2
    host.folder_paths.filename_list_cache.clear()
    assert not [f for f in host.pack_submodule("nodes.render_nodes").renderer_files() if f.startswith("cancelled")]

    steps.clear()
    _, _, text = run("cancelled", lambda step, total, loss: steps.append(step))
    assert steps == [5, 6, 7, 8] and "8 steps (continued from step 4, where an interrupted run stopped, from the samples " \
        "it encoded)" in text, text
    assert encodes.count("cancelled") == 5 + 1 and not state.exists() and not samples.exists()  # only the probe again
    a, b = load_file(str(folder / "never_cancelled.safetensors")), load_file(str(folder / "cancelled.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.rsplit("evaluation loss ", 1)[1] == text.rsplit("evaluation loss ", 1)[1]

    steps.clear()  # cancelled again; then another training under the same name (one caption changed) starts afresh
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run("cancelled", cancel_after_three)
    assert state.is_file()
    steps.clear()
    _, _, text = _train_eight_steps(host, testing, photos, "cancelled", lambda step, total, loss: steps.append(step),
                                    captions=("an astronaut on the moon", "a portrait"))
    assert steps == list(range(1, 9)) and "continued" not in text and "samples" not in text.split(" on ")[0]
    assert not state.exists() and not samples.exists()


def test_a_full_disk_when_keeping_the_encoded_samples_does_not_stop_the_training(host, testing, photos, monkeypatch,
                                                                                   caplog):
    """The encoded samples are kept only to spare a continued training the encoding: when they cannot be written (a
    full disk) the training goes on and says so in the log; nothing is left behind."""
    node = host.pack_submodule("nodes.renderer_train_node")

    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(node, "save_samples", full_disk)
    _, _, text = _train_eight_steps(host, testing, photos, "full_disk")
    assert "8 steps on 2 samples" in text and "could not be kept" in caplog.text and "No space left" in caplog.text
    folder = Path(host.folder_paths.get_folder_paths("moviedreamer")[0])
    assert (folder / "full_disk.safetensors").is_file() and not list(folder.glob("full_disk.safetensors.*"))


def _train_eight_steps(host, testing, photos, name, on_step=None, captions=("an astronaut", "a portrait"),
                       clip_vision=None):
    """The training node's function on two photos and the tiny host models: 8 steps saved as ``name``."""
    from PIL import Image

    train = host.pack_submodule("nodes.renderer_train_node").train_renderer
    images = torch.stack([torch.from_numpy(np.array(Image.open(photos / p).convert("RGB").resize((48, 48)))).float() / 255
                          for p in ("astronaut.png", "hopper.png")])
    vision = clip_vision if clip_vision is not None else testing.tiny_clip_vision(0)
    return train(testing.tiny_sd(0), testing.tiny_vae(0), testing.tiny_clip(0), vision, images,
                 list(captions), face_embedder="clip_vision_crop", steps=8, batch_size=2,
                 learning_rate=1e-3, augmentations=0, save_name=name, on_step=on_step)


def test_a_ctrl_c_that_stops_the_training_command_at_once_says_what_is_kept(host):
    """A Ctrl-C while the images were encoded (minutes on a real model), or a second one, ended the command in a
    traceback that did not say whether the encoded samples were kept (an audit)."""
    cli = host.pack_submodule("cli.train_renderer")
    samples = Path(host.folder_paths.get_folder_paths("moviedreamer")[0]) / "md_early.safetensors.samples"
    assert cli._stopped_at_once(str(samples), False).endswith("nothing is kept; run the same command to start again")
    samples.parent.mkdir(parents=True, exist_ok=True)
    samples.write_bytes(b"")
    try:
        said = cli._stopped_at_once(str(samples), False)
        assert said == (f"stopped before training began: the encoded images are kept in {samples}; run the same "
                        "command again to train without encoding them again"), said
        assert cli._stopped_at_once(str(samples), True).startswith("stopped at once, in the middle of a step")
    finally:
        samples.unlink()


def test_ctrl_c_stops_the_training_command_after_a_whole_step_and_the_same_command_continues(host, testing, photos):
    """``cli/train_renderer.py``'s Ctrl-C (a real SIGINT to this process): during training it stops after the step
    under way with the state saved, and the next run continues; before training, or a second time, it stops at once."""
    import os
    import signal
    import time

    from moviedreamer_core.renderer.fit_state import state_path

    cli = host.pack_submodule("cli.train_renderer")
    folder = Path(host.folder_paths.get_folder_paths("moviedreamer")[0])
    previous = signal.getsignal(signal.SIGINT)
    with cli.CtrlC() as ctrl_c:
        def on_step(step, total, loss):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)
            ctrl_c.after_step(step)

        with pytest.raises(cli.StoppedByUser) as stopped:
            _train_eight_steps(host, testing, photos, "ctrl_c", on_step)
    assert stopped.value.step == 2 and signal.getsignal(signal.SIGINT) is previous
    assert Path(state_path(str(folder / "ctrl_c.safetensors"))).is_file()
    steps = []
    _, _, text = _train_eight_steps(host, testing, photos, "ctrl_c", lambda step, total, loss: steps.append(step))
    assert steps == [3, 4, 5, 6, 7, 8] and "continued from step 2" in text, text

    with cli.CtrlC() as ctrl_c:  # nothing trained yet: Ctrl-C is the usual KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        ctrl_c.after_step(1)
        os.kill(os.getpid(), signal.SIGINT)  # the first during training only asks
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second stops at once
            time.sleep(5)



def test_temporary_files_of_a_killed_training_are_not_listed_and_the_next_training_removes_them(host, testing, photos):
    """Found by an audit: ``cli/train_renderer.py`` killed (kill -9) while it wrote its encoded samples, its training
    state (``.resume``: 538 MB for SD1.5, 8.3 GB for SDXL, every two minutes) or the renderer left the temporary
    file (``.tmp_xxxxxxxx.samples`` / ``.resume`` / ``.safetensors``) in ``models/moviedreamer`` for ever: the same
    command run again left it there, and a half-written ``.tmp_xxxxxxxx.safetensors`` was offered by the renderer and
    planner loaders. The loaders now leave such names out, and a training removes those nobody is writing."""
    from ..killed_writer import killed_mid_write

    folder = Path(host.folder_paths.get_folder_paths("moviedreamer")[0])
    folder.mkdir(parents=True, exist_ok=True)
    left = [killed_mid_write(folder / f"killed.safetensors{suffix}") for suffix in ("", ".resume", ".samples")]
    host.folder_paths.filename_list_cache.clear()
    nodes_host = host.pack_submodule("nodes.host")
    offered = host.pack_submodule("nodes.render_nodes").renderer_files() + nodes_host.model_files()
    assert not [f for f in offered if ".tmp_" in f], offered
    _, _, text = _train_eight_steps(host, testing, photos, "killed")
    assert not [p.name for p in left if p.exists()], "the next training left the killed one's temporary files"
    assert "removed 3 temporary files a killed training left" in text, text
    assert (folder / "killed.safetensors").is_file()
