"""Reference photos in greyscale wider than 8 bits read as the picture they hold, not clipped to white or black."""

import numpy as np
import pytest
from PIL import Image

from moviedreamer_core.script.references import load_image_file


@pytest.mark.parametrize("kind", ["png16", "tif16", "tif_float"])
def test_a_wide_greyscale_reference_reads_as_its_8_bit_picture(tmp_path, kind):
    grey8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # a ramp 0..252
    if kind == "png16":
        path, image = tmp_path / "r.png", Image.fromarray(grey8.astype(np.uint16) * 257)
    elif kind == "tif16":
        path, image = tmp_path / "r.tif", Image.fromarray(grey8.astype(np.uint16) * 257)
    else:
        path, image = tmp_path / "r.tif", Image.fromarray(grey8.astype(np.float32) / 255.0)
    image.save(path)
    rgb = load_image_file(str(path))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[..., 0].astype(int) - grey8).max() <= 1, rgb[0, ::8, 0]
