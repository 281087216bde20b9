"""While the gateway answers online predictions, its job runner claims a quarter of its partitions."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from starlette.datastructures import Headers

from inferrer.dataplane.admission import Admission
from inferrer.jobs.runner import RunnerLimits
from metrics.definitions import InferrerMetrics


def test_the_partition_limit_drops_to_a_quarter_while_online_traffic_runs() -> None:
    busy = False
    limits = RunnerLimits(8, 30.0, 600.0, online_busy=lambda: busy)
    assert limits.in_flight_now() == 8
    busy = True
    assert limits.in_flight_now() == 2
    assert RunnerLimits(3, 30.0, 600.0, online_busy=lambda: True).in_flight_now() == 1


def test_admission_tells_whether_predictions_ran_lately() -> None:
    admission = Admission(10, 5.0, InferrerMetrics(CollectorRegistry()))

    async def scenario() -> list[bool]:
        seen = [admission.busy_within(60)]
        async with admission.admit(Headers()):
            seen.append(admission.busy_within(0))  # in flight
        seen += [admission.busy_within(60), admission.busy_within(0)]
        return seen

    assert asyncio.run(scenario()) == [False, True, True, False]
