"""Gateway batching in-process: results split back exactly and in order; failures stay per batch."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inferrer.dataplane.batching import Batcher, Outputs
from inferrer.errors import UpstreamAnswered
from metrics.definitions import InferrerMetrics
from wire.access import current_request_id


def _batcher(max_rows: int = 64, max_in_flight: int = 1) -> Batcher:
    return Batcher(max_rows, 0.05, max_in_flight, InferrerMetrics(CollectorRegistry()))


def test_concurrent_requests_share_upstream_calls_and_get_their_own_rows_back() -> None:
    calls: list[int] = []

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        calls.append(len(rows))
        await asyncio.sleep(0.01)
        return "7", "node-x", {"predict": rows[:, 0].tolist(), "twice": (rows * 2).tolist()}

    async def scenario() -> list[tuple[str, str, Outputs]]:
        batcher = _batcher()
        requests = [np.full((1 + i % 3, 2), float(i)) for i in range(20)]
        answers = await asyncio.gather(
            *(batcher.submit(("m", "7", "s1", ("p",), False), r, send) for r in requests)
        )
        for i, (version, node, outputs) in enumerate(answers):
            assert (version, node) == ("7", "node-x")
            assert outputs["predict"] == [float(i)] * (1 + i % 3)
            assert outputs["twice"] == [[2.0 * i, 2.0 * i]] * (1 + i % 3)
        return answers

    asyncio.run(scenario())
    assert sum(calls) == sum(1 + i % 3 for i in range(20))
    assert len(calls) < 20  # batched: one call went alone, the rest queued behind it


def test_batches_respect_max_rows() -> None:
    calls: list[int] = []

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        calls.append(len(rows))
        await asyncio.sleep(0.01)
        return "1", "n", {"predict": [0] * len(rows)}

    async def scenario() -> None:
        batcher = _batcher(max_rows=5)
        await asyncio.gather(
            *(batcher.submit(("m", "1", "s1", ("p",), False), np.zeros((2, 1)), send) for _ in range(12))
        )

    asyncio.run(scenario())
    assert max(calls) <= 5 and sum(calls) == 24


def test_lanes_keep_models_and_versions_apart() -> None:
    seen: list[str] = []

    def sender(tag: str):  # type: ignore[no-untyped-def]
        async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
            seen.append(tag)
            await asyncio.sleep(0.005)
            return tag, "n", {"predict": [tag] * len(rows)}

        return send

    async def scenario() -> None:
        batcher = _batcher()
        # "a" version "1" twice: the same number for two artifacts (a delete, then a new deploy).
        keys = [
            ("a", "1", "s1", ("p",), False),
            ("a", "2", "s1", ("p",), False),
            ("b", "1", "s1", ("p",), False),
        ]
        keys = [*keys, ("a", "1", "s2", ("p",), False)] * 5
        answers = await asyncio.gather(
            *(batcher.submit(k, np.zeros((1, 1)), sender(f"{k[0]}{k[1]}{k[2]}")) for k in keys)
        )
        assert [a[2]["predict"] for a in answers] == [[f"{k[0]}{k[1]}{k[2]}"] for k in keys]

    asyncio.run(scenario())
    assert set(seen) == {"a1s1", "a2s1", "b1s1", "a1s2"}


def test_an_upstream_failure_reaches_every_request_of_its_batch_only() -> None:
    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        await asyncio.sleep(0.01)
        if (rows == 13).any():
            raise RuntimeError("node fell over")
        return "1", "n", {"predict": rows[:, 0].tolist()}

    async def scenario() -> None:
        batcher = _batcher(max_rows=1)  # one request per call: only the bad call fails
        results = await asyncio.gather(
            *(
                batcher.submit(("m", "1", "s1", ("p",), False), np.full((1, 1), float(i)), send)
                for i in range(20)
            ),
            return_exceptions=True,
        )
        failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        assert failed == [13]

    asyncio.run(scenario())


def test_values_a_node_refuses_fail_only_the_request_that_sent_them() -> None:
    calls: list[int] = []

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        calls.append(len(rows))
        await asyncio.sleep(0.01)
        if (rows == 13).any():
            raise UpstreamAnswered(422, "model rejected the input")
        return "1", "n", {"predict": rows[:, 0].tolist()}

    async def scenario() -> list[object]:
        batcher = _batcher()
        return await asyncio.gather(
            *(
                batcher.submit(("m", "1", "s1", ("p",), True), np.full((1, 1), float(i)), send)
                for i in range(20)
            ),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert [i for i, r in enumerate(results) if isinstance(r, UpstreamAnswered)] == [13]
    assert [r[2]["predict"] for r in results if isinstance(r, tuple)] == [
        [float(i)] for i in range(20) if i != 13
    ]
    assert max(calls) > 1 and calls.count(1) > 2  # batched, then the refused batch went again one by one


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_a_lone_request_never_waits_for_the_timer(max_in_flight: int) -> None:
    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        return "1", "n", {"predict": [1]}

    async def scenario() -> float:
        batcher = Batcher(64, 5.0, max_in_flight, InferrerMetrics(CollectorRegistry()))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(("m", "1", "s1", ("p",), False), np.zeros((1, 1)), send)
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0


def test_a_batched_call_carries_the_request_ids_of_its_requests() -> None:
    seen: list[str] = []

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        seen.append(current_request_id.get())
        await asyncio.sleep(0.01)
        return "1", "n", {"predict": [0] * len(rows)}

    async def one(batcher: Batcher, i: int) -> None:
        current_request_id.set(f"req-{i}")
        await batcher.submit(("m", "1", "s1", ("p",), False), np.zeros((1, 1)), send)

    async def scenario() -> None:
        batcher = _batcher()
        await asyncio.gather(*(one(batcher, i) for i in range(6)))

    asyncio.run(scenario())
    carried = [rid for header in seen for rid in header.split(",")]
    assert sorted(carried) == sorted(f"req-{i}" for i in range(6))
    assert len(seen) < 6


def test_clients_back_from_a_batch_are_gathered_while_a_lone_client_never_waits() -> None:
    """A closed loop of clients: each sends again a millisecond after its answer (its network). For a
    model whose predict call is expensive, once a batch of several came back, their next requests
    travel together instead of the first going alone; one client on its own is always sent at once."""
    sizes: list[int] = []
    node = asyncio.Semaphore(1)  # one predict thread; made in the loop asyncio.run creates below
    lane = ("m", "1", "s", ("predict",), False)
    batcher = Batcher(64, 0.005, 2, InferrerMetrics(CollectorRegistry()), gather_above_s=0.001)

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        async with node:
            sizes.append(len(rows))
            await asyncio.sleep(0.004)  # a forest's predict: the cost is per call, flat in rows
        batcher.observe_predict(lane, 0.004)
        return "1", "n", {"predict": rows[:, 0].tolist()}

    async def clients(count: int, rounds: int) -> None:
        async def client(i: int) -> None:
            for _ in range(rounds):
                _, _, outputs = await batcher.submit(lane, np.full((1, 2), float(i)), send)
                assert outputs["predict"] == [float(i)]
                await asyncio.sleep(0.001)

        await asyncio.gather(*(client(i) for i in range(count)))

    async def busy_then_quiet() -> None:
        await clients(16, 20)
        await asyncio.sleep(0.05)  # past the gathering window

    asyncio.run(busy_then_quiet())
    assert sum(sizes) == 16 * 20
    # Before the lane gathered after a batch: 2 of 3 calls carried one row, 5.3 rows per call on
    # average; with it, 13% and 13.9 on a quiet machine (bounds left loose for a loaded one).
    assert sizes.count(1) / len(sizes) < 0.45 and np.mean(sizes) >= 7, sizes
    assert batcher._lanes == {}  # the idle lane is forgotten once its window has passed

    sizes.clear()

    async def lone_client() -> float:
        start = asyncio.get_running_loop().time()
        await clients(1, 20)
        return asyncio.get_running_loop().time() - start

    elapsed = asyncio.run(lone_client())
    assert sizes == [1] * 20
    assert elapsed < 20 * (0.004 + 0.001 + 0.004)  # never held back by max_wait_s (5 ms each time)


@pytest.mark.parametrize(("predict_s", "gathers"), [(0.004, True), (0.0001, False)])
def test_only_a_model_whose_calls_are_expensive_gathers_after_a_batch(
    predict_s: float, gathers: bool
) -> None:
    """Right after a batch of several: for an expensive model a new request waits for company (up to
    max_wait_s); for a cheap one (the wait would cost more than the call) it is sent at once."""
    lane = ("m", "1", "s", ("predict",), False)
    batcher = Batcher(64, 0.05, 1, InferrerMetrics(CollectorRegistry()), gather_above_s=0.001)

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        await asyncio.sleep(0.002)
        batcher.observe_predict(lane, predict_s)
        return "1", "n", {"predict": rows[:, 0].tolist()}

    async def scenario() -> float:
        rows = np.zeros((1, 2))
        await asyncio.gather(*(batcher.submit(lane, rows, send) for _ in range(5)))  # 1 alone, then 4
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(lane, rows, send)
        return loop.time() - start

    waited = asyncio.run(scenario())
    assert (waited >= 0.05) is gathers, waited


def test_requests_left_over_by_max_rows_leave_while_the_lane_gathers() -> None:
    """A batch full at max_rows leaves the rest queued; while the lane gathers after a batch (no
    dispatch when a call returns), they still leave within max_wait_s, never wait forever."""
    lane = ("m", "1", "s", ("predict",), False)
    batcher = Batcher(64, 0.01, 1, InferrerMetrics(CollectorRegistry()), gather_above_s=0.001)
    sizes: list[int] = []

    async def send(rows: np.ndarray) -> tuple[str, str, Outputs]:
        sizes.append(len(rows))
        await asyncio.sleep(0.015)  # the window: 2 x 15 ms, so the 40 come back inside it
        batcher.observe_predict(lane, 0.004)  # an expensive model: the lane gathers after a batch
        return "1", "n", {"predict": rows[:, 0].tolist()}

    async def scenario() -> None:
        one = np.zeros((1, 2))
        await asyncio.gather(*(batcher.submit(lane, one, send) for _ in range(3)))  # 1 alone, then 2
        big = [np.zeros((n, 2)) for n in (40, 30)]  # in the window: 40 leaves at max_rows, 30 waits
        answers = await asyncio.wait_for(asyncio.gather(*(batcher.submit(lane, r, send) for r in big)), 1.0)
        assert [len(a[2]["predict"]) for a in answers] == [40, 30]

    asyncio.run(scenario())
    assert sizes == [1, 2, 40, 30]
