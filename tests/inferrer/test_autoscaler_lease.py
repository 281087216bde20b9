"""Several gateway processes, one store: exactly one decides at a time, and when it stops renewing
(killed: it never releases) another decides within the lease. Two services on one SQLite file,
as two gateway processes on one machine share it; the fleet test kills a real one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from inferrer.control.nodes import NodeStatus
from inferrer.scaling.service import LocalSignals, ScalingService
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.scaling.store import ScalingStore, open_scaling_engine
from metrics.scaling import ScalingMetrics
from wire.autoscaler_answers import NodeReport

SETTINGS = AutoscaleSettings(min_nodes=0, max_nodes=3, interval_s=0.1, lease_s=0.5, keep_warm_s=0)


async def _no_partitions() -> int:
    return 0


def _service(store: ScalingStore, held: list[int]) -> ScalingService:
    async def statuses() -> list[NodeStatus]:
        return []

    local = LocalSignals(lambda: 0, lambda: held[0], lambda: 0, _no_partitions, lambda: None)
    return ScalingService(store, SETTINGS, local, statuses, ScalingMetrics(CollectorRegistry()), "gateway-1")


def test_one_process_decides_and_another_takes_over_within_the_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = open_scaling_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
        store = ScalingStore(engine)
        held = [0]
        first, second = _service(store, held), _service(store, held)
        decided = [await first.tick(), await second.tick(), await first.tick(), await second.tick()]
        assert decided[0] is not None and decided[2] is not None  # the first holds the lease
        assert decided[1] is None and decided[3] is None  # the second only publishes
        assert store.lease_holder() == first.process

        held[0] = 2  # work waits; the first process dies (it never releases its lease)
        killed_at = time.monotonic()
        while (decision := await second.tick()) is None:
            assert time.monotonic() - killed_at < 3 * SETTINGS.lease_s, "no take-over"
            await asyncio.sleep(SETTINGS.interval_s)
        took_over = time.monotonic() - killed_at
        assert took_over <= SETTINGS.lease_s + 2 * SETTINGS.interval_s
        assert store.lease_holder() == second.process
        # both processes' held predictions were published; the dead one's row ages out
        assert (decision.direction, decision.rule, decision.desired) == ("up", "from_zero", 1)

        await second.record(NodeReport(node="modelhost-1", outcome="started", seconds=4.0))
        await second.record(NodeReport(node="modelhost-1", outcome="started", seconds=2.0))
        state = store.load_state()
        assert state is not None and state.desired == 1 and state.cold_start_s == 4.0 * 0.7 + 2.0 * 0.3
        kinds = [event.kind for event in store.recent(10)]
        assert kinds[:3] == ["started", "started", "up"]
        engine.dispose()

    asyncio.run(scenario())
