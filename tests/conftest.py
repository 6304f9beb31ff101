"""Shared test configuration: markers, and host discovery reported up front.

Tests under ``tests/host/`` need a ComfyUI checkout (see ``tests/host/harness.py``: ``COMFYUI_PATH``, or the pack
inside ``ComfyUI/custom_nodes/``). They carry the ``host`` marker, so ``-m "not host"`` leaves them out; without a
host they are skipped and the reason is printed in the header and in the summary (``-rs`` in pytest.ini).

Under CI (the ``CI`` variable set, as ``.ci/run`` runs) a missing host is an error, not a skip: the host tests are
the ones that matter most, and a run that skipped all of them must not pass. The run stops before collecting
and prints the README's host set-up steps. ``MOVIEDREAMER_NO_HOST=1`` is for core-only local runs.
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


def readme_host_setup() -> str:
    """The README's commands that set up a host for the tests (the ``bash`` block after "To set up a host")."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"To set up a host for the tests.*?```bash\n(.*?)```", text, re.S)
    return found.group(1).rstrip() if found else "(see the README, section Tests)"


def ci_requires_host() -> str | None:
    """The error to stop a CI run with when no host is found, or ``None``."""
    import os

    if os.environ.get("CI", "").lower() in ("", "0", "false", "no"):
        return None
    if os.environ.get("MOVIEDREAMER_NO_HOST") == "1":
        return "MOVIEDREAMER_NO_HOST=1 is for core-only local runs; under CI the host tests must run (unset it)."
    root, reason = find_host(ignore_no_host_flag=True)
    if root is not None:
        return None
    return (f"CI needs the ComfyUI host, so that the host tests run instead of being skipped: {reason}.\n"
            f"Set it up as the README says (section Tests), then run again:\n\n{readme_host_setup()}\n")


def pytest_configure(config):
    problem = ci_requires_host()
    if problem:
        raise pytest.UsageError(problem)
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
