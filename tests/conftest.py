"""Shared test configuration: markers, and host discovery reported up front.

Tests under ``tests/host/`` need a ComfyUI checkout (see ``tests/host/harness.py``: ``COMFYUI_PATH``, or the pack
inside ``ComfyUI/custom_nodes/``). They carry the ``host`` marker, so ``-m "not host"`` leaves them out; without a
host they are skipped and the reason is printed in the header and in the summary (``-rs`` in pytest.ini).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .host.harness import find_host

HOST_TESTS_DIR = Path(__file__).resolve().parent / "host"
MARKERS = {
    "host": "needs the real ComfyUI host (tests/host; skipped with the reason when none is found)",
    "slow": "long end-to-end cases; .ci/run still runs them (deselect locally with -m \"not slow\")",
}


def pytest_configure(config):
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in declared:  # pytest.ini declares them too; this keeps them valid under another ini
            config.addinivalue_line("markers", f"{name}: {text}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    tiny models gain nothing from more, and on a busy two-core machine OpenMP's waiting threads made such tests
    up to ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory):
    """A fresh interpreter for the README's commands (``tests/fresh_python.py``): ``fresh_python.run("python ...")``."""
    from .fresh_python import FreshPython

    return FreshPython(tmp_path_factory.mktemp("fresh_venv") / "venv")


def pytest_report_header(config):
    root, reason = find_host()
    return f"ComfyUI host: {root}" if root else f"ComfyUI host: none, host tests will be skipped ({reason})"


def _is_host_test(item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(HOST_TESTS_DIR)
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config, items):
    root, reason = find_host()
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if _is_host_test(item) or item.get_closest_marker("host") is not None:
            item.add_marker(pytest.mark.host)
            if root is None:
                item.add_marker(skip)
