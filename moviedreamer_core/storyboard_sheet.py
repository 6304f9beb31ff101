"""The storyboard as one picture: every keyframe in a grid, each captioned with its shot and action.

The cheapest overview of a planned and rendered movie (before any image-to-video sampling), and the picture
the toy cinema demo writes next to its movie. Keyframes are scaled to a common cell with nearest-neighbour
resampling when they are small (a 32x32 toy keyframe stays crisp) and Lanczos otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (24, 24, 24)
TEXT = (230, 230, 230)


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


class ReadOneByOne(SequenceABC):
    """``count`` images read when indexed (``read(i)`` -> ``uint8 [h, w, 3]``): ``contact_sheet`` pastes each into
    the sheet and lets it go, so a long movie's sheet never holds its keyframes together (the keyframes of a
    ``keyframe_set``, read from the project folder)."""

    def __init__(self, count: int, read: Callable[[int], np.ndarray]):
        self.count, self.read = int(count), read

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            raise TypeError("ReadOneByOne reads one image at a time")
        if not 0 <= index < self.count:
            raise IndexError(f"image {index} of {self.count}")
        return self.read(index)


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str] = (), *, columns: int = 6, cell: int = 128,
                  caption_lines: int = 2, margin: int = 4) -> np.ndarray:
    """``uint8 [H, W, 3]``: ``images`` (``uint8 [h, w, 3]`` each) in a grid of ``columns``, each scaled to
    ``cell`` pixels wide and captioned with up to ``caption_lines`` lines of its caption."""
    if not len(images):
        raise ValueError("no keyframes to lay out")
    if columns < 1 or cell < 8:
        raise ValueError(f"columns must be at least 1 and cell at least 8 pixels (got {columns}, {cell})")
    h0, w0 = images[0].shape[:2]
    cell_h = max(1, round(cell * h0 / w0))
    font = ImageFont.load_default()
    line_h = 12
    text_h = caption_lines * line_h if captions else 0
    columns = min(columns, len(images))
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (margin + columns * (cell + margin), margin + rows * (cell_h + text_h + margin)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        x, y = margin + c * (cell + margin), margin + r * (cell_h + text_h + margin)
        im = Image.fromarray(np.asarray(image, dtype=np.uint8))
        resample = Image.NEAREST if im.width <= cell // 2 else Image.LANCZOS
        sheet.paste(im.resize((cell, cell_h), resample), (x, y))
        if captions:
            words, lines = str(captions[i]).split(), []
            while words and len(lines) < caption_lines:
                line = words.pop(0)
                while words and draw.textlength(line + " " + words[0], font=font) <= cell:
                    line += " " + words.pop(0)
                lines.append(line if not words or len(lines) < caption_lines - 1 else line + " " + " ".join(words))
            for j, line in enumerate(lines):
                draw.text((x, y + cell_h + 1 + j * line_h), _fit(line, draw, font, cell), fill=TEXT, font=font)
    return np.array(sheet)  # a writable array (torch.from_numpy warns on a read-only one)
