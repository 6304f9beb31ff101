"""The dataset builder's CLIP Vision token encoder (transformers, outside the host) gives the same tokens as
the host's own ``comfy.clip_vision`` on the same weights: the planner trained on a built dataset plans in
the token space a ComfyUI graph's CLIP_VISION gives (``clip_vision.image_embeds``, K=1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_vision_folder(testing, tmp_path_factory):
    """A random CLIPVisionModelWithProjection with the host's tiny test layout, saved as a transformers folder."""
    cfg = {k: v for k, v in testing.TINY_CLIP_VISION.items() if k not in ("model_type", "torch_dtype")}
    config = transformers.CLIPVisionConfig(**cfg)
    torch.manual_seed(0)
    model = transformers.CLIPVisionModelWithProjection(config).eval()
    with torch.no_grad():  # large weights, so different images land far apart (see testing.tiny_clip_vision)
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("tiny_clip_vision")
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _host_model(testing, folder):
    import json
    import os
    import tempfile

    import comfy.clip_vision
    import comfy.utils

    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(testing.TINY_CLIP_VISION, f)
    try:
        vision = comfy.clip_vision.ClipVisionModel(path)
    finally:
        os.remove(path)
    # The host stores text/vision encoders in fp16 on the CPU; fp32 here so that the comparison is about the
    # preprocessing and the network, not fp16 rounding of the weights (about 3e-3 relative).
    vision.model.to(torch.float32)
    missing, unexpected = vision.load_sd(comfy.utils.load_torch_file(str(folder / "model.safetensors")))
    assert not [k for k in missing if "position_ids" not in k], missing
    return vision


def test_transformers_clip_vision_tokens_equal_the_host(host, testing, tiny_vision_folder):
    from moviedreamer_core.data.encoders import resolve_token_encoder

    encoder = resolve_token_encoder(str(tiny_vision_folder))
    assert encoder.space.to_dict() == {"source": "clip_vision.image_embeds", "K": 1, "D": 32}
    vision = _host_model(testing, tiny_vision_folder)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in ((48, 40, 3), (48, 40, 3), (32, 32, 3), (90, 130, 3))]
    ours = encoder.encode(images)
    assert ours.shape == (4, 1, 32)
    host_rows = [vision.encode_image(torch.from_numpy(im)[None].float() / 255.0)["image_embeds"].float() for im in images]
    theirs = torch.cat(host_rows)[:, None]
    assert (ours - theirs).abs().max() < 1e-4, (ours - theirs).abs().max()
    # and the tokens tell images apart
    cos = torch.nn.functional.cosine_similarity(ours[0, 0], ours[2, 0], dim=0)
    assert cos < 0.99
