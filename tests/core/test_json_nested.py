"""JSON nested thousands deep ("[[[[...]]]]") in a file, a file's metadata or a message from outside fails the way that
reader fails for any other malformed JSON, not with Python's RecursionError (which is not a ValueError: a reader
catching ValueError let it through as a traceback). ``text_files.loads_json`` makes it a ValueError; the readers here
are those that did not catch it (planner and renderer files: ``test_model_metadata_nested.py``; manifests:
``test_manifest_hostile.py``; scripts, workflows, the validation route: ``test_script_hostile.py``,
``test_queue_cli.py``, ``tests/host/test_server.py``; the distributed inputs and a worker's payload:
``test_distribution.py``; the queue command's websocket: ``test_queue_cli.py``; the toy UNet file:
``tests/host/test_toycinema.py``)."""

from __future__ import annotations

import json

import pytest

#: Far past Python's recursion limit (1,000 by default), as the other hostile-input tests nest.
DEEP = "[" * 100_000 + "]" * 100_000


def test_loads_json_makes_deep_nesting_a_value_error_and_reads_the_rest_as_json_does():
    from moviedreamer_core.text_files import loads_json

    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(('{"a":' * 5000 + "1" + "}" * 5000).encode())
    with pytest.raises(json.JSONDecodeError):
        loads_json("{nope")
    for text in ('{"a": [1, 2.5, null, "\\u00e9"]}', b'[true]', "[" * 100 + "]" * 100):
        assert loads_json(text) == json.loads(text)
