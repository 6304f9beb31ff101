"""Shared test configuration: markers, and host discovery reported up front.

Tests under ``tests/host/`` need a ComfyUI checkout (see ``tests/host/harness.py``: ``COMFYUI_PATH``, or the pack
inside ``ComfyUI/custom_nodes/``). They carry the ``host`` marker, so ``-m "not host"`` leaves them out; without a
host they are skipped and the reason is printed in the header and in the summary (``-rs`` in pytest.ini).

Under CI (the ``CI`` variable set, as ``.ci/run`` runs) a missing host is an error, not a skip: the host tests are
the ones that matter most, and a run that skipped all of them must not pass. The run stops before collecting
and prints the README's host set-up steps. ``MOVIEDREAMER_NO_HOST=1`` is for core-only local runs.

Tests under ``tests/distributed/`` run a cluster of ComfyUI instances joined by ComfyUI-Distributed
(``tests/distributed/cluster.py``). They carry the ``distributed`` marker and the ``host`` marker (they need the host
and skip without one, as host tests do); without ComfyUI-Distributed (``COMFYUI_DISTRIBUTED_PATH``, or
``<host>/custom_nodes/ComfyUI-Distributed``) they are skipped with the reason, under CI too, where the reason is also
repeated at the end of the run.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest.ini runs the files in two processes (pytest-xdist, -n 2) on this two-core machine. Each runs torch on one
    # thread, here and in the programs its tests start: two threads beside another busy process run many times slower
    # (README, "CPU threads"). Set before torch is imported (OMP_NUM_THREADS is read once); a user's own values win.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MOVIEDREAMER_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import pytest  # noqa: E402

from .distributed.cluster import distributed_version, find_distributed  # noqa: E402
from .host.harness import find_host  # noqa: E402

HOST_TESTS_DIR = Path(__file__).resolve().parent / "host"
DISTRIBUTED_TESTS_DIR = Path(__file__).resolve().parent / "distributed"
MARKERS = {
    "host": "needs the real ComfyUI host (tests/host; skipped with the reason when none is found)",
    "distributed": "runs a master and worker ComfyUIs joined by ComfyUI-Distributed (tests/distributed; skipped "
                   "with the reason when ComfyUI-Distributed is not found)",
    "slow": "long end-to-end cases; .ci/run still runs them (deselect locally with -m \"not slow\")",
}


def readme_host_setup() -> str:
    """The README's commands that set up a host for the tests (the ``bash`` block after "To set up a host")."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"To set up a host for the tests.*?```bash\n(.*?)```", text, re.S)
    return found.group(1).rstrip() if found else "(see the README, section Tests)"


def under_ci() -> bool:
    """The ``CI`` variable is set (to anything but empty, 0, false or no), as ``.ci/run`` runs under CI."""
    import os

    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def ci_requires_host() -> str | None:
    """The error to stop a CI run with when no host is found, or ``None``."""
    import os

    if not under_ci():
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
    lines = [f"ComfyUI host: {root}" if root else f"ComfyUI host: none, host tests will be skipped ({reason})"]
    if root:
        path, why = find_distributed(root)
        lines.append(f"ComfyUI-Distributed: {path} (version {distributed_version(path)})" if path else
                     f"ComfyUI-Distributed: none, distributed tests will be skipped ({why})")
    return lines


def _is_under(item, folder: Path) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _is_host_test(item) -> bool:
    return _is_under(item, HOST_TESTS_DIR)


_DISTRIBUTED_SKIPPED = pytest.StashKey[tuple]()  # (number of distributed tests skipped, reason)


def pytest_collection_modifyitems(config, items):
    root, reason = find_host()
    skip = pytest.mark.skip(reason=reason)
    distributed: Optional[tuple] = None  # (path, reason), looked up once, only when a distributed test is collected
    skipped = 0
    for item in items:
        is_distributed = _is_under(item, DISTRIBUTED_TESTS_DIR) or item.get_closest_marker("distributed") is not None
        if _is_host_test(item) or is_distributed or item.get_closest_marker("host") is not None:
            item.add_marker(pytest.mark.host)
            if root is None:
                item.add_marker(skip)
        if is_distributed:
            item.add_marker(pytest.mark.distributed)
            if root is not None:
                distributed = distributed or find_distributed(root)
                if distributed[0] is None:
                    item.add_marker(pytest.mark.skip(reason=distributed[1]))
                    skipped += 1
    if skipped:
        config.stash[_DISTRIBUTED_SKIPPED] = (skipped, distributed[1])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Under CI, a skipped distributed suite is said once more at the very end, where nobody misses it."""
    skipped = config.stash.get(_DISTRIBUTED_SKIPPED, None)
    if skipped and under_ci():
        terminalreporter.section("distributed tests skipped", sep="!", yellow=True, bold=True)
        terminalreporter.write_line(f"CI ran without ComfyUI-Distributed: {skipped[0]} distributed test(s) were "
                                    f"skipped: {skipped[1]}", yellow=True, bold=True)
