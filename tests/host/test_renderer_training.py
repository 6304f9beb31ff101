"""Training the renderer adapter on a frozen tiny host UNet: the loss falls and the output comes to depend
on the tokens (MovieDreamer sections 3.2, 3.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moviedreamer_core.renderer import RendererAdapter, RendererConfig
from moviedreamer_core.renderer.train import RendererBatch, augment_images, randomise_identity, renderer_loss, train_step


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
