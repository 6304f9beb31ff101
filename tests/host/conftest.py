"""Fixtures for tests that run the real ComfyUI host (see harness.py). Without a host they are skipped
with the reason printed in the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

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


@pytest.fixture(scope="session")
def photos(host):
    """Real face photos in the host's input folder: astronaut.png, hopper.png, coffee.png (no face)."""
    skdata = pytest.importorskip("skimage.data")
    matplotlib = pytest.importorskip("matplotlib")
    inp = Path(host.folder_paths.get_input_directory())
    Image.fromarray(skdata.astronaut()).save(inp / "astronaut.png")
    Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB").save(inp / "hopper.png")
    Image.fromarray(skdata.coffee()).save(inp / "coffee.png")
    return inp
