"""Every limit a script is held to, in one place (the README's "Limits" table lists the same numbers).

Two kinds of limit live here. The *movie* limits catch typos ("keyframes: 300" for "3") before hours of
sampling; the planner itself handles thousands of keyframes. The *work* limits bound what checking a script
may cost: a script comes from anywhere (a shared workflow, the HTTP API, an editor posting on every key
press), and no script may make the validator run for long, use much memory or drive a recursion to the
interpreter's limit. With these numbers every script is accepted or refused within about a second on two CPU
cores (``tests/core/test_script_hostile.py`` holds the validator to 2 s).
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------------------ the movie

#: Keyframes in one shot, whether given by ``keyframes`` or by a list of action sentences.
MAX_KEYFRAMES_PER_SHOT = 32
#: Seconds in one shot.
MAX_SHOT_DURATION_S = 600.0
#: Shots in one script.
MAX_SHOTS = 5000
#: Keyframes in one script.
MAX_TOTAL_KEYFRAMES = 20000
#: Seconds of the whole movie (four hours; 5000 shots of 600 s would ask for 833 hours of video).
MAX_TOTAL_DURATION_S = 4 * 3600
#: Characters in one script's cast.
MAX_CHARACTERS = 256
#: Characters on screen in one shot.
MAX_CHARACTERS_PER_SHOT = 16
#: Reference photos of one character.
MAX_REFERENCES_PER_CHARACTER = 16
#: Length of a name, a shot id or a reference file name, in characters.
MAX_NAME_LENGTH = 64
MAX_FILE_NAME_LENGTH = 255
#: Length of a sentence (title, style, scene, action, description), in characters.
MAX_TEXT_LENGTH = 2000
#: Pixels (width x height) of one reference photo, read from the file's header before anything is decoded.
MAX_REFERENCE_PIXELS = 64_000_000
#: Pixels of all of a script's distinct reference files together (each is decoded once, and all are held while the
#: script is encoded: 6 GB at the limit, eighty 24-megapixel phone photos). Without it, a few-KB script naming 4096
#: large files would have the server decode them all at once (an audit: ten names of one 63-megapixel file took 21 s
#: and 2 GB; a review: 512 megapixels refused 24 photos of a current phone's default size).
MAX_TOTAL_REFERENCE_PIXELS = 2_000_000_000



@dataclass(frozen=True)
class ListLimit:
    """A list of the script held to a number of items: the one entry that the schema (its ``max_length``), the
    parser (which counts but does not compose the items past it), the validator (which reads only the first
    ``limit`` items) and the refusal's words all read, so that they cannot disagree."""

    fields: tuple[str, ...]  # the field names from the top of the script: ("shots", "action") is any shot's action
    limit: int
    what: str  # "action sentences in one shot"
    advice: str = ""  # right after "at most N": ", one per keyframe; split the shot"

    @property
    def place(self) -> tuple:
        """Where the list is among the nodes open above it while parsing, any list index written 0:
        ``("shots", 0, "action")``."""
        out: list = []
        for f in self.fields[:-1]:
            out += [f, 0]
        return (*out, self.fields[-1])

    def too_many(self, count) -> str:
        """The refusal: "40 action sentences in one shot is too many (at most 32, one per keyframe; split the shot)"."""
        return f"{count} {self.what} is too many (at most {self.limit}{self.advice})"


#: Every list of the script with a length limit, by its fields from the top of the script.
LIST_LIMITS: dict[tuple[str, ...], ListLimit] = {limit.fields: limit for limit in (
    ListLimit(("characters",), MAX_CHARACTERS, "characters in the cast"),
    ListLimit(("shots",), MAX_SHOTS, "shots", "; split the movie into several scripts"),
    ListLimit(("characters", "references"), MAX_REFERENCES_PER_CHARACTER, "reference photos for one character"),
    ListLimit(("shots", "characters"), MAX_CHARACTERS_PER_SHOT, "characters on screen in one shot"),
    ListLimit(("shots", "action"), MAX_KEYFRAMES_PER_SHOT, "action sentences in one shot", ", one per keyframe; split the shot"),
)}


def list_limit(*fields: str) -> int:
    """The number of items the list at ``fields`` may hold (``list_limit("shots", "action")``)."""
    return LIST_LIMITS[fields].limit

# ------------------------------------------------------------------------------------ the work of parsing

#: Characters of script text (about 1 MB); longer text is refused before it is parsed.
MAX_SCRIPT_CHARS = 1_000_000
#: Bytes of a script file (UTF-8 takes up to 4 bytes a character); larger files are refused by their size,
#: before they are read.
MAX_SCRIPT_FILE_BYTES = 4 * MAX_SCRIPT_CHARS
#: Bytes of a request body to ``POST /moviedreamer/validate_script`` (the script inside JSON, with escapes).
MAX_REQUEST_BYTES = 8 * MAX_SCRIPT_CHARS
#: Levels of nesting (mappings and lists inside each other). A valid script needs 4.
MAX_DEPTH = 20
#: Values in the parsed script (every mapping, list, text and number), counted after YAML aliases are expanded.
#: A valid script of 1 MB holds about 130,000 (5000 shots with 20000 action sentences).
MAX_VALUES = 200_000
#: Characters of a number as written; longer numbers are refused before they are converted.
MAX_NUMBER_CHARS = 30

# ------------------------------------------------------------------------------------------ the answers

#: Problems spelled out in one report; the rest are counted ("... and 950 more problems").
MAX_REPORTED_PROBLEMS = 50
#: Problems each checking pass writes out in full; past this it only counts them, so that a script with
#: 100,000 mistakes costs no more to report than one with 1000.
MAX_COLLECTED_PROBLEMS = 1000
#: Characters of a user's value quoted inside a message (longer values end with "…").
MAX_SHOWN_CHARS = 80
#: Names listed in "known: ..." before the rest are counted.
MAX_LISTED_NAMES = 12
