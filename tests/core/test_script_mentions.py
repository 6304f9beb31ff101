"""What an action sentence says about each character it names (``script/mentions.py``), the text the planner binds
to that character's face (issue #21: "Ava, in a purple hat, and Bo walk in" must give Ava the hat)."""

from __future__ import annotations

from moviedreamer_core.script.limits import MAX_CHARACTERS, MAX_NAME_LENGTH, MAX_TEXT_LENGTH
from moviedreamer_core.script.mentions import NEUTRAL, keyframe_mentions

NAMES = ["Fen", "Bo", "Ann", "Anna", "Dr. X"]


def test_each_name_owns_the_text_up_to_the_next_name_with_its_own_name_made_neutral():
    action = "We find Fen, a green hat on, and Bo in the forest. They stand: Fen in the centre and Bo on the right."
    fen, bo = keyframe_mentions(action, NAMES, [0, 1])
    assert fen == f"{NEUTRAL}, a green hat on, and {NEUTRAL} in the centre and"
    assert bo == f"{NEUTRAL} in the forest. They stand: {NEUTRAL} on the right."
    assert "Fen" not in fen + bo and "Bo" not in fen + bo, "names never reach the planner"


def test_characters_not_named_get_none_and_order_follows_the_cast_on_screen():
    assert keyframe_mentions("Bo turns to the door.", NAMES, [0, 1]) == [None, f"{NEUTRAL} turns to the door."]
    assert keyframe_mentions("Bo turns to the door.", NAMES, [1, 0]) == [f"{NEUTRAL} turns to the door.", None]
    assert keyframe_mentions("The sea is grey.", NAMES, [0, 1, 2]) == [None, None, None]
    assert keyframe_mentions("Bo waves.", [], []) == []


def test_whole_names_only_longest_first_and_names_with_punctuation():
    # "Ann" is not found inside "Anna" or "Annabel"; "Dr. X" (a name ending in a non-word character) is found
    ann, anna, drx = keyframe_mentions("Anna greets Ann and Dr. X. Annabel waits.", NAMES, [2, 3, 4])
    assert anna == f"{NEUTRAL} greets"
    assert ann == f"{NEUTRAL} and"
    assert drx == f"{NEUTRAL}. Annabel waits."
    # a name that is a regular expression's special text is a literal
    assert keyframe_mentions("A+ (the robot) beeps. A waits.", ["A+", "A"], [0, 1]) == \
        [f"{NEUTRAL} (the robot) beeps.", f"{NEUTRAL} waits."]


def test_the_largest_script_is_one_pass_per_sentence():
    """The most characters a script may have, each name as long as allowed and full of regex metacharacters, and
    the longest action: answered (one linear regular-expression pass), every character found."""
    names = [(f"({i}|" + "a*" * MAX_NAME_LENGTH)[:MAX_NAME_LENGTH] for i in range(MAX_CHARACTERS)]
    action = (" ".join(names[:20]) + " x" * MAX_TEXT_LENGTH)[:MAX_TEXT_LENGTH]
    got = keyframe_mentions(action, names, list(range(MAX_CHARACTERS)))
    assert len(got) == MAX_CHARACTERS
    assert all(g is not None for g in got[:20]) and all(g is None for g in got[20:])


def test_names_written_lists_each_name_once_in_the_order_written():
    from moviedreamer_core.script.mentions import names_written

    names = ["Ava", "Bo", "Ava Lee", "Dr. No"]
    assert names_written("Bo greets Ava Lee, then Bo and Dr. No leave; Avalanche.", names) == ["Bo", "Ava Lee", "Dr. No"]
    assert names_written("nobody here", names) == [] and names_written("Ava", []) == []
