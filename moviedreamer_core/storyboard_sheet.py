"""The storyboard as one picture: every keyframe in a grid, each captioned with its shot and action.

The cheapest overview of a planned and rendered movie (before any image-to-video sampling), and the picture
the toy cinema demo writes next to its movie. Keyframes are scaled to a common cell with nearest-neighbour
resampling when they are small (a 32x32 toy keyframe stays crisp) and Lanczos otherwise.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence as SequenceABC
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

BACKGROUND = (24, 24, 24)
TEXT = (230, 230, 230)
#: The largest sheet drawn, in pixels (8192 x 4096). The sheet is held three times over (PIL, numpy, and the node's
#: float IMAGE at 12 bytes a pixel: 400 MB here), so a long movie at the node's widest cells (2048 pixels, 64
#: columns) would otherwise ask for tens of gigabytes; cells are made narrower until the sheet fits.
MAX_SHEET_PIXELS = 8192 * 4096
MIN_CELL = 8
LINE_HEIGHT = 12


#: Caption size in points (Pillow's own font is drawn at 10 unless told otherwise).
FONT_SIZE = 10
#: Fonts tried for captions, in order, by file name (Pillow looks in the system's font folders): Pillow's own font
#: draws no letter outside ASCII ("Zoë", "Ólafur" and "李雷" came out as boxes), so a caption is drawn in the first of
#: these that has every one of its letters, else in the first found (Linux: DejaVu, Noto; Windows: Segoe UI, Arial,
#: Microsoft YaHei; macOS: Arial Unicode, PingFang).
CAPTION_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "segoeui.ttf", "arial.ttf", "Arial Unicode.ttf",
                 "NotoSansCJK-Regular.ttc", "msyh.ttc", "PingFang.ttc", "wqy-zenhei.ttc", "DroidSansFallbackFull.ttf")


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple:
    """The caption fonts this system has (``CAPTION_FONTS``), then Pillow's own."""
    found = []
    for name in CAPTION_FONTS:
        try:
            found.append(ImageFont.truetype(name, FONT_SIZE))
        except OSError:
            continue
    return (*found, ImageFont.load_default(FONT_SIZE))


def _draws(font, text: str) -> bool:
    """Whether ``font`` (one of ``_fonts()``) has a glyph for every letter of ``text``."""
    i = _fonts().index(font)
    return all(_has_glyph(i, ch) for ch in set(text) if not ch.isspace())


@functools.lru_cache(maxsize=4096)
def _has_glyph(font: int, ch: str) -> bool:
    """Whether caption font ``font`` (an index of ``_fonts()``) draws ``ch`` as a letter, not as its missing-letter
    box (the glyph of a private-use character no font defines). Kept: a long movie's captions share their letters."""
    return bytes(_fonts()[font].getmask(ch)) != _box(font)


@functools.lru_cache(maxsize=None)
def _box(font: int) -> bytes:
    return bytes(_fonts()[font].getmask("\U000F0000"))


def caption_font(text: str):
    """The first caption font that draws every letter of ``text`` (``CAPTION_FONTS``), else the first there is."""
    fonts = _fonts()
    if text.isascii():
        return fonts[0]
    return next((f for f in fonts if _draws(f, text)), fonts[0])


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


class SheetTooLarge(ValueError):
    """No cell, however narrow, keeps the sheet within the pixels a sheet may hold."""


def sheet_size(n: int, aspect: float, *, columns: int, cell: int, text_h: int, margin: int) -> tuple[int, int]:
    """``(width, height)`` of the sheet of ``n`` keyframes of ``aspect`` (height / width) in cells ``cell`` wide."""
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    cell_h = max(1, round(cell * aspect))
    return margin + columns * (cell + margin), margin + rows * (cell_h + text_h + margin)


def fitting_cell(n: int, aspect: float, *, columns: int, cell: int, text_h: int = 2 * LINE_HEIGHT, margin: int = 4,
                 max_pixels: int = MAX_SHEET_PIXELS) -> int:
    """The widest cell, at most ``cell``, whose sheet holds at most ``max_pixels``; ``SheetTooLarge`` when not even
    ``MIN_CELL`` does (too many keyframes, or keyframes far taller than wide)."""
    def pixels(c: int) -> int:
        w, h = sheet_size(n, aspect, columns=columns, cell=c, text_h=text_h, margin=margin)
        return w * h

    if pixels(cell) <= max_pixels:
        return cell
    if pixels(MIN_CELL) > max_pixels:
        w, h = sheet_size(n, aspect, columns=columns, cell=MIN_CELL, text_h=text_h, margin=margin)
        raise SheetTooLarge(f"a storyboard sheet of {n} keyframes would be {w} x {h} pixels even with {MIN_CELL}-pixel "
                            f"cells, over the {max_pixels:,} pixels a sheet may hold")
    lo, hi = MIN_CELL, cell  # pixels(lo) fits, pixels(hi) does not; the sheet grows with the cell
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pixels(mid) <= max_pixels else (lo, mid)
    return lo


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str] = (), *, columns: int = 6, cell: int = 128,
                  caption_lines: int = 2, margin: int = 4, max_pixels: int = MAX_SHEET_PIXELS) -> np.ndarray:
    """``uint8 [H, W, 3]``: ``images`` (``uint8 [h, w, 3]`` each) in a grid of ``columns``, each scaled to
    ``cell`` pixels wide and captioned with up to ``caption_lines`` lines of its caption. A sheet that would hold
    more than ``max_pixels`` gets narrower cells (``fitting_cell``; a warning is logged), and one that no cell fits is
    refused (``SheetTooLarge``, naming the keyframes' count and size)."""
    if not len(images):
        raise ValueError("no keyframes to lay out")
    if columns < 1 or cell < MIN_CELL:
        raise ValueError(f"columns must be at least 1 and cell at least {MIN_CELL} pixels (got {columns}, {cell})")
    h0, w0 = images[0].shape[:2]
    line_h = LINE_HEIGHT
    text_h = caption_lines * line_h if captions else 0
    try:
        fitted = fitting_cell(len(images), h0 / w0, columns=columns, cell=cell, text_h=text_h, margin=margin,
                              max_pixels=max_pixels)
    except SheetTooLarge as e:
        raise SheetTooLarge(f"{e} (each keyframe {w0} x {h0}); lay out part of the movie") from None
    if fitted < cell:
        logger.warning("storyboard sheet: cells %d -> %d pixels wide, so that %d keyframes fit in %s pixels", cell,
                       fitted, len(images), f"{max_pixels:,}")
    cell = fitted
    cell_h = max(1, round(cell * h0 / w0))
    columns = min(columns, len(images))
    sheet = Image.new("RGB", sheet_size(len(images), h0 / w0, columns=columns, cell=cell, text_h=text_h, margin=margin),
                      BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        x, y = margin + c * (cell + margin), margin + r * (cell_h + text_h + margin)
        im = Image.fromarray(np.asarray(image, dtype=np.uint8))
        resample = Image.NEAREST if im.width <= cell // 2 else Image.LANCZOS
        sheet.paste(im.resize((cell, cell_h), resample), (x, y))
        if captions:
            font = caption_font(str(captions[i]))
            words, lines = str(captions[i]).split(), []
            while words and len(lines) < caption_lines:
                line = words.pop(0)
                while words and draw.textlength(line + " " + words[0], font=font) <= cell:
                    line += " " + words.pop(0)
                lines.append(line if not words or len(lines) < caption_lines - 1 else line + " " + " ".join(words))
            for j, line in enumerate(lines):
                draw.text((x, y + cell_h + 1 + j * line_h), _fit(line, draw, font, cell), fill=TEXT, font=font)
    return np.array(sheet)  # a writable array (torch.from_numpy warns on a read-only one)
