"""What several fleet test modules share: one fleet of two gateway processes for the modules that
need two."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.ephemeral_fleet import RunningFleet, start_fleet


@pytest.fixture(scope="session")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """Two gateway processes and two nodes, started once for the modules that need two processes
    (each uses models of its own names): a model keeps its 3 newest versions (test_retention.py
    deploys 30; the others never make more than 3), and a memory budget that the example model
    fits in many times and a 1.5 MiB forest does not. No prediction cache: predictions must reach
    the nodes (test_cache_workers.py starts a fleet of its own with the cache on)."""
    running = start_fleet(
        tmp_path_factory.mktemp("two-gateways"),
        nodes=2,
        extra_args=("--inferrer-workers", "2"),
        env={
            "INFERRER_KEEP_VERSIONS": "3",
            "MODELHOST_MEMORY_BUDGET_MIB": "1",
        },
    )
    yield running
    assert running.stop() == 0, running.log()
