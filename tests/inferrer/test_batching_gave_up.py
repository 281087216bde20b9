"""Gateway batching in-process: a request that gave up waiting in a lane (its deadline met, its
client gone) is never sent upstream, and a batch left with no request makes no call."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inferrer.dataplane.batching import Batcher, LaneKey, Outputs
from metrics.definitions import InferrerMetrics

_LANE: LaneKey = ("m", "1", "s1", ("predict",), False)


async def _queued(batcher: Batcher, key: LaneKey, count: int) -> None:
    """Until `count` requests wait in the lane (each task runs to its wait: no time passes)."""
    for _ in range(1000):
        lane = batcher._lanes.get(key)
        if lane is not None and len(lane.waiting) == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} requests never queued")


class _HeldUpstream:
    """An upstream whose first call waits for `gate`; every call's rows are kept in `sent`.
    Made inside the event loop (its Event belongs to that loop)."""

    def __init__(self) -> None:
        self.sent: list[np.ndarray] = []
        self.gate = asyncio.Event()

    async def send(self, rows: np.ndarray) -> tuple[str, str, Outputs]:
        self.sent.append(rows)
        if len(self.sent) == 1:
            await self.gate.wait()
        return "1", "n", {"predict": rows[:, 0].tolist()}


async def _sent(sent: list[np.ndarray]) -> None:
    """Until the first call is upstream (the lead task runs to it: no time passes)."""
    for _ in range(1000):
        if sent:
            return
        await asyncio.sleep(0)
    raise AssertionError("the lead request was never sent")


def test_a_queued_request_that_gave_up_is_not_sent_upstream() -> None:
    """docs/reliability.md: "a batched request that gave up is not sent". The lane's one call is held
    upstream while three requests queue; one meets its deadline, one's client goes away (its task
    cancelled): the next call carries only the rows of the one still waiting."""

    async def scenario() -> list[np.ndarray]:
        upstream = _HeldUpstream()
        batcher = Batcher(64, 60.0, 1, InferrerMetrics(CollectorRegistry()))  # no timer sends them

        async def with_deadline() -> None:
            async with asyncio.timeout(0.05):
                await batcher.submit(_LANE, np.full((2, 1), 1.0), upstream.send)

        lead = asyncio.create_task(batcher.submit(_LANE, np.full((1, 1), 0.0), upstream.send))
        await _sent(upstream.sent)  # the lead request is upstream, alone
        late = asyncio.create_task(with_deadline())
        gone = asyncio.create_task(batcher.submit(_LANE, np.full((4, 1), 2.0), upstream.send))
        kept = asyncio.create_task(batcher.submit(_LANE, np.full((3, 1), 3.0), upstream.send))
        await _queued(batcher, _LANE, 3)
        with pytest.raises(TimeoutError):
            await late  # its deadline passed while it waited in the lane
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        upstream.gate.set()
        assert (await lead)[2] == {"predict": [0.0]}
        assert await kept == ("1", "n", {"predict": [3.0, 3.0, 3.0]})
        return upstream.sent

    sent = asyncio.run(scenario())
    assert [rows.tolist() for rows in sent] == [[[0.0]], [[3.0]] * 3]


def test_a_batch_whose_requests_all_gave_up_makes_no_upstream_call() -> None:
    async def scenario() -> list[np.ndarray]:
        upstream = _HeldUpstream()
        batcher = Batcher(64, 60.0, 1, InferrerMetrics(CollectorRegistry()))
        lead = asyncio.create_task(batcher.submit(_LANE, np.full((1, 1), 0.0), upstream.send))
        await _sent(upstream.sent)
        gone = [
            asyncio.create_task(batcher.submit(_LANE, np.full((2, 1), 1.0), upstream.send)) for _ in range(3)
        ]
        await _queued(batcher, _LANE, 3)
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        upstream.gate.set()
        await lead
        assert _LANE not in batcher._lanes  # nothing in flight: the lane is idle and forgotten
        await batcher.submit(_LANE, np.full((1, 1), 5.0), upstream.send)  # after any call the batch made
        return upstream.sent

    sent = asyncio.run(scenario())
    assert [rows.tolist() for rows in sent] == [[[0.0]], [[5.0]]]
