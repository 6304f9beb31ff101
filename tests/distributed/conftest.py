"""Fixtures of the distributed tests (issue 22): a master and two worker ComfyUIs joined by ComfyUI-Distributed
(``cluster.py``). Every test here carries the ``distributed`` and ``host`` markers and is skipped, with the reason,
without the host or without ComfyUI-Distributed (tests/conftest.py).

- ``cluster``: one ``Cluster`` for the session (master + 2 workers, one shared output folder, one torch thread
  everywhere, ``worker_timeout_seconds`` 20): ``queue``, ``wait``, ``run``, ``worker_history``, ``wait_worker``,
  ``kill_worker``, ``restart_worker``, ``log_tails``. A test that kills a worker restarts it before it ends.
"""

from __future__ import annotations

import pytest

from ..host.harness import find_host
from .cluster import Cluster, find_distributed


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Master + 2 workers on 127.0.0.1 sharing one output folder; started once (about 15 s), stopped at the end."""
    root, reason = find_host()
    if root is None:
        pytest.skip(reason)
    distributed, reason = find_distributed(root)
    if distributed is None:
        pytest.skip(reason)
    with Cluster(tmp_path_factory.mktemp("cluster"), workers=2, root=root, distributed_path=distributed,
                 shared_output=True) as running:
        yield running
