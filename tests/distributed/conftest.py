"""Fixtures of the distributed tests (issue 22): a master and two worker ComfyUIs joined by ComfyUI-Distributed
(``cluster.py``). Every test here carries the ``distributed`` and ``host`` markers and is skipped, with the reason,
without the host or without ComfyUI-Distributed (tests/conftest.py).

- ``cluster``: one ``Cluster`` for the session (master + 2 workers, one shared output folder, one torch thread
  everywhere, ``worker_timeout_seconds`` 20): ``queue``, ``wait``, ``run``, ``worker_history``, ``wait_worker``,
  ``kill_worker``, ``restart_worker``, ``log_tails``. A test that kills a worker restarts it before it ends.
"""

from __future__ import annotations

import pytest

from .cluster import running_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Master + 2 workers on 127.0.0.1 sharing one output folder; started once (about 15 s), stopped at the end."""
    yield from running_cluster(tmp_path_factory, "cluster", shared_output=True)
