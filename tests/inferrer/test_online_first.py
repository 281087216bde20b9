"""While the gateway answers online predictions, its job runner claims that many partitions fewer."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import CollectorRegistry
from starlette.datastructures import Headers

from inferrer.dataplane import admission as admission_module
from inferrer.dataplane.admission import Admission
from inferrer.jobs.runner import RunnerLimits
from metrics.definitions import InferrerMetrics


def test_the_partition_limit_drops_by_the_online_predictions_in_flight() -> None:
    online = 0
    limits = RunnerLimits(8, 30.0, 600.0, online_in_flight=lambda: online)
    assert limits.in_flight_now() == 8
    online = 3
    assert limits.in_flight_now() == 5
    online = 16
    assert limits.in_flight_now() == 1


def test_admission_tells_the_most_predictions_in_flight_lately() -> None:
    admission = Admission(10, 5.0, InferrerMetrics(CollectorRegistry()))

    async def scenario() -> list[int]:
        seen = [admission.recent_peak()]
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):
                await stack.enter_async_context(admission.admit(Headers()))
            seen.append(admission.recent_peak())
        seen.append(admission.recent_peak())  # none in flight now: the peak stays for a while
        return seen

    assert asyncio.run(scenario()) == [0, 3, 3]


def test_the_peak_fades_once_two_windows_pass_without_predictions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_module, "PEAK_WINDOW_S", 0.05)
    admission = Admission(10, 5.0, InferrerMetrics(CollectorRegistry()))

    async def scenario() -> bool:
        async with admission.admit(Headers()):
            pass
        for _ in range(100):  # bounded: 5 s at most
            if admission.recent_peak() == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert asyncio.run(scenario())
