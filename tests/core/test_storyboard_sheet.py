"""The storyboard sheet's captions: drawn in a font that has the script's letters."""

from __future__ import annotations

import numpy as np
import pytest

from moviedreamer_core.storyboard_sheet import _draws, _fonts, caption_font, contact_sheet


def test_captions_in_other_alphabets_are_drawn_in_a_font_that_has_their_letters():
    """Pillow's own font has no letter outside ASCII: "Zoë", "Ólafur", "Σοφία" came out with boxes in their place
    (found by an audit). A caption is drawn in the first system font that has all its letters."""
    if len(_fonts()) == 1:
        pytest.skip("no caption font of storyboard_sheet.CAPTION_FONTS on this system (Pillow's own font only)")
    assert not _draws(_fonts()[-1], "Zoë"), "Pillow's own font lacks ë: the check tells a missing letter"
    for text in ("Zoë walks", "Ólafur and Ñandú", "Σοφία waits"):
        assert _draws(caption_font(text), text), text
    frame = np.zeros((32, 32, 3), np.uint8)
    accented = contact_sheet([frame], ["s1: Zoë"], columns=1, cell=96)
    boxed = contact_sheet([frame], ["s1: Zo\U000F0000"], columns=1, cell=96)
    assert not np.array_equal(accented, boxed), "ë is drawn as a letter, not as the missing-letter box"
