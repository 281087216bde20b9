"""A stalled node, deadlines, overload and a fleet with no node: bounded waits and fast, clear answers.

The fleet's UPSTREAM_TIMEOUT_S is 2 s; the inferrer admits 24 predictions at once; deadlines are
capped at 8 s. Every loop is bounded in time and count and sends only to loopback.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import RunningFleet, start_fleet, wait_until

pytestmark = pytest.mark.fleet

UPSTREAM_TIMEOUT_S = 2.0
MAX_IN_FLIGHT = 24
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
NODES = ("modelhost-1", "modelhost-2", "modelhost-3")


@dataclass
class Answer:
    sent_at: float  # seconds since the load started
    seconds: float
    status: int
    node: str | None
    body: str
    retry_after: str | None = None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("overload")),
        nodes=3,
        env_lines=f"UPSTREAM_TIMEOUT_S={UPSTREAM_TIMEOUT_S}\n",
        env={"INFERRER_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "INFERRER_MAX_REQUEST_TIMEOUT_S": "8"},
    )
    yield fleet
    assert fleet.stop() == 0


async def _post(client: httpx.AsyncClient, url: str, started: float, headers: dict[str, str]) -> Answer:
    sent = time.monotonic()
    try:
        response = await client.post(url, json=ROW, headers=headers)
    except httpx.HTTPError as exc:
        return Answer(sent - started, time.monotonic() - sent, 0, None, repr(exc))
    seconds = time.monotonic() - sent
    got = response.headers
    return Answer(
        sent - started, seconds, response.status_code, got.get("x-modelhost-node"),
        response.text[:200], got.get("retry-after"),
    )  # fmt: skip


async def _load_while(
    fleet: RunningFleet, concurrency: int, scenario: Callable[[], object], max_requests: int = 20_000
) -> list[Answer]:
    """Predictions from `concurrency` workers until the scenario coroutine returns."""
    url = f"{fleet.url}/api/v1/models/iris/predict"
    answers: list[Answer] = []
    done = asyncio.Event()
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        while not done.is_set() and len(answers) < max_requests:
            answers.append(await _post(client, url, started, {}))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        try:
            await asyncio.wait_for(scenario(), 120)  # type: ignore[arg-type]
        finally:
            done.set()
            await asyncio.gather(*workers)
    return answers


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


def test_a_stalled_node_costs_a_request_at_most_the_timeout_plus_one_retry(fleet: RunningFleet) -> None:
    victim = fleet.pid("modelhost-2")
    marks: dict[str, float] = {}

    async def scenario() -> None:
        start = time.monotonic()
        await asyncio.sleep(3)
        os.kill(victim, signal.SIGSTOP)
        marks["stopped"] = time.monotonic() - start
        await asyncio.sleep(20)
        os.kill(victim, signal.SIGCONT)
        marks["resumed"] = time.monotonic() - start
        await asyncio.sleep(8)

    try:
        answers = asyncio.run(_load_while(fleet, 16, scenario))
    finally:
        os.kill(victim, signal.SIGCONT)
    failed = [a for a in answers if a.status != 200]
    during = [a for a in answers if marks["stopped"] <= a.sent_at < marks["resumed"]]
    slow = [a for a in during if a.seconds > 1.0]  # sent to the stalled node first
    after = [a for a in answers if a.sent_at >= marks["resumed"] + 3]
    longest = max(a.seconds for a in answers)
    print(
        f"SIGSTOP modelhost-2 for 20 s at c=16, UPSTREAM_TIMEOUT_S={UPSTREAM_TIMEOUT_S}: "
        f"sent={len(answers)} failed={len(failed)} during stall={len(during)} "
        f"waited>1s={len(slow)} ({100 * len(slow) / max(len(during), 1):.1f}%) "
        f"longest={longest:.2f}s p99={_p99([a.seconds for a in answers]) * 1000:.0f}ms "
        f"served by the victim after SIGCONT={sum(a.node == 'modelhost-2' for a in after)}"
    )
    assert not failed, failed[:3]
    assert longest <= UPSTREAM_TIMEOUT_S + 2.0  # the timeout, then one retry on a loaded 2-core box
    assert len(slow) <= 0.05 * len(during)  # nginx skips the node after each timeout
    # A stopped process answers nothing: no answer from it lands while it is stopped.
    assert not any(
        a.node == "modelhost-2" and marks["stopped"] + 0.5 < a.sent_at + a.seconds < marks["resumed"]
        for a in answers
    )
    assert any(a.node == "modelhost-2" for a in after)  # it recovers by itself
    # nginx's skips of the stalled node are counted by node (504: nginx timed it out).
    metrics = httpx.get(f"{fleet.url}/metrics").text
    timeouts = re.search(
        r'modelfleet_inferrer_upstream_node_failures_total\{node="modelhost-2",status="504"\} (\S+)', metrics
    )
    assert timeouts and float(timeouts[1]) >= 1, metrics[-2000:]  # one try may carry a batch


def _stop_all(fleet: RunningFleet, sig: signal.Signals) -> None:
    for node in NODES:
        os.kill(fleet.pid(node), sig)


def test_a_deadline_answers_504_in_time_and_bad_deadlines_400(fleet: RunningFleet) -> None:
    url = f"{fleet.url}/api/v1/models/iris/predict"
    fast = httpx.post(url, json=ROW, headers={"X-Request-Timeout": "5"})
    assert fast.status_code == 200
    for bad in ("soon", "-1", "0", "nan", "inf"):
        response = httpx.post(url, json=ROW, headers={"X-Request-Timeout": bad})
        assert response.status_code == 400 and "X-Request-Timeout" in response.json()["error"], bad
    _stop_all(fleet, signal.SIGSTOP)  # nothing answers: only the deadline ends the wait
    try:
        waits = []
        for _ in range(5):
            start = time.monotonic()
            response = httpx.post(url, json=ROW, headers={"X-Request-Timeout": "0.5"}, timeout=10)
            waits.append(time.monotonic() - start)
            assert response.status_code == 504, response.text
            assert "deadline of 0.5 s" in response.json()["error"]
    finally:
        _stop_all(fleet, signal.SIGCONT)
    print(f"deadline 0.5 s with every node stalled: 5 x 504, waits {[round(w, 2) for w in waits]} s")
    assert all(0.5 <= w < 1.0 for w in waits)
    assert wait_until(lambda: httpx.post(url, json=ROW, timeout=10).status_code == 200, timeout_s=15)


def test_beyond_capacity_the_inferrer_answers_503_with_retry_after_at_once(fleet: RunningFleet) -> None:
    url = f"{fleet.url}/api/v1/models/iris/predict"
    total = 3 * MAX_IN_FLIGHT

    async def burst() -> list[Answer]:
        limits = httpx.Limits(max_connections=total)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            started = time.monotonic()
            headers = {"X-Request-Timeout": "2"}
            return list(await asyncio.gather(*(_post(client, url, started, headers) for _ in range(total))))

    _stop_all(fleet, signal.SIGSTOP)  # admitted predictions stay in flight until their deadline
    try:
        answers = asyncio.run(burst())
    finally:
        _stop_all(fleet, signal.SIGCONT)
    refused = [a for a in answers if a.status == 503]
    timed_out = [a for a in answers if a.status == 504]
    print(
        f"{total} concurrent predictions, limit {MAX_IN_FLIGHT}, nodes stalled: "
        f"503={len(refused)} (slowest {max(a.seconds for a in refused) * 1000:.0f} ms) "
        f"504={len(timed_out)} (deadline 2 s)"
    )
    assert len(timed_out) == MAX_IN_FLIGHT and len(refused) == total - MAX_IN_FLIGHT
    assert all("overloaded" in a.body and a.retry_after == "1" for a in refused)
    assert max(a.seconds for a in refused) < 1.0
    assert wait_until(lambda: httpx.post(url, json=ROW, timeout=10).status_code == 200, timeout_s=15)
    metrics = httpx.get(f"{fleet.url}/metrics").text
    assert _counter(metrics, "Overloaded") == len(refused)
    assert _counter(metrics, "DeadlineExceeded") >= len(timed_out)
    assert "modelfleet_inferrer_predictions_in_flight 0.0" in metrics


def _counter(metrics: str, reason: str) -> float:
    pattern = rf'modelfleet_http_rejected_requests_total\{{reason="{reason}",service="inferrer"\}} (\S+)'
    match = re.search(pattern, metrics)
    return float(match[1]) if match else 0.0


def _node_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def test_with_every_node_down_answers_503_fast_and_recovers_when_one_returns(fleet: RunningFleet) -> None:
    url = f"{fleet.url}/api/v1/models/iris/predict"
    launcher = fleet.process.pid
    os.kill(launcher, signal.SIGSTOP)  # the supervisor would restart the nodes at once
    try:
        _stop_all(fleet, signal.SIGKILL)
        assert wait_until(lambda: not any(_node_ready(p) for p in fleet.node_ports), timeout_s=5)
        waits = []
        for _ in range(20):
            start = time.monotonic()
            response = httpx.post(url, json=ROW, timeout=10)
            waits.append(time.monotonic() - start)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
        ready = httpx.get(f"{fleet.url}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["ready"] is False
    finally:
        os.kill(launcher, signal.SIGCONT)
    print(f"every node down: 20 x 503, slowest {max(waits) * 1000:.0f} ms, /health/ready 503")
    assert max(waits) < 2.0
    # The launcher restarts the nodes; the first one to be ready serves within seconds.
    assert wait_until(lambda: any(_node_ready(p) for p in fleet.node_ports), timeout_s=60, interval_s=0.05)
    first_ready = time.monotonic()
    assert wait_until(lambda: httpx.post(url, json=ROW, timeout=10).status_code == 200, timeout_s=10)
    print(f"back to success {time.monotonic() - first_ready:.2f} s after the first node was ready again")
    assert httpx.get(f"{fleet.url}/health/ready").json()["ready"] is True
