"""Fixtures for tests that run the real ComfyUI host (see harness.py). Without a host they are skipped
with the reason printed in the summary."""

from __future__ import annotations

import pytest

from .harness import InProcessHost, ServerHost, find_host

HOST_ROOT, NO_HOST_REASON = find_host()


def pytest_collection_modifyitems(config, items):
    if HOST_ROOT is None:
        skip = pytest.mark.skip(reason=NO_HOST_REASON)
        for item in items:
            if "tests/host/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def host(tmp_path_factory) -> InProcessHost:
    """The host in this process with the pack loaded (about 5 s, once per session)."""
    return InProcessHost(HOST_ROOT, tmp_path_factory.mktemp("comfy_inprocess"))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``main.py`` on a free loopback port with only this pack loaded; stopped at the end of the session."""
    srv = ServerHost(HOST_ROOT, tmp_path_factory.mktemp("comfy_server"))
    yield srv
    srv.stop()
