"""The multimodal movie script (MovieDreamer section 3.2): schema, validation, content hash.

``load_script(text, input_dir=..., image_count=...)`` is the one entry point most callers need.
"""

from .check import check_script
from .hashing import canonical_json, normalised_script, script_hash
from .schema import (
    SCRIPT_FORMAT_VERSION,
    Camera,
    Character,
    KeyframeSpec,
    Script,
    Shot,
    Transition,
    json_schema,
)
from .validate import ScriptError, ScriptIssue, load_script, parse_script_text, validate_script

__all__ = [
    "SCRIPT_FORMAT_VERSION", "Camera", "Character", "KeyframeSpec", "Script", "Shot", "Transition",
    "json_schema", "ScriptError", "ScriptIssue", "load_script", "parse_script_text", "validate_script",
    "canonical_json", "normalised_script", "script_hash", "check_script",
]
