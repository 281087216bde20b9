"""A node that dies (SIGKILL) or is stopped (SIGTERM) under concurrent load fails no request."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local_specs import UVICORN_GRACEFUL_S
from tests.harness import RunningFleet, start_fleet, wait_until

pytestmark = pytest.mark.fleet

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = start_fleet(Path(tmp_path_factory.mktemp("failover")), nodes=3)
    yield fleet
    assert fleet.stop() == 0


def _load(
    fleet: RunningFleet, total: int, concurrency: int, at: int, act: Callable[[], None]
) -> dict[str, object]:
    """`total` predictions from `concurrency` workers; `act` runs once `at` requests were sent."""
    sent = 0
    failures: list[str] = []
    nodes: Counter[str] = Counter()
    latencies: list[float] = []
    acted = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total:
            sent += 1
            if sent == at:
                await asyncio.to_thread(act)
                acted.set()
            start = time.perf_counter()
            try:
                response = await client.post(f"{fleet.url}/api/v1/models/iris/predict", json=ROW)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code == 200:
                nodes[response.json()["node"]] += 1
            else:
                failures.append(f"{response.status_code}: {response.text[:200]}")

    async def run() -> None:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), 120)

    asyncio.run(run())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
    return {
        "sent": sent,
        "failed": len(failures),
        "failures": failures[:5],
        "nodes": dict(nodes),
        "p99_ms": round(p99, 1),
    }


def _rejoined(fleet: RunningFleet, node: str, old_pid: int) -> bool:
    if fleet.pid(node) == old_pid:
        return False
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    return any(n["id"] == node and n["ready"] for n in nodes)


def _exit_watch(pid: int, sig: signal.Signals) -> tuple[Callable[[], None], dict[str, float]]:
    """An action that signals `pid` and measures how long the process takes to be gone."""
    took: dict[str, float] = {}

    def watch(start: float) -> None:
        while time.monotonic() - start < 30:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:  # exited and reaped by the launcher
                took["exit_s"] = time.monotonic() - start
                return
            time.sleep(0.02)

    def act() -> None:
        start = time.monotonic()
        os.kill(pid, sig)
        threading.Thread(target=watch, args=(start,), daemon=True).start()

    return act, took


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_a_node_lost_under_load_fails_no_request(fleet3: RunningFleet, stop_signal: signal.Signals) -> None:
    victim = "modelhost-2"
    pid = fleet3.pid(victim)
    act, took = _exit_watch(pid, stop_signal)
    report = _load(fleet3, total=2000, concurrency=32, at=500, act=act)
    print(f"{stop_signal.name} of {victim} after 500 of 2000 predictions at c=32: {report}, {took}")
    assert report["failed"] == 0, report["failures"]
    # SIGTERM: in-flight requests finish, then the node exits within uvicorn's grace period.
    assert wait_until(lambda: "exit_s" in took, timeout_s=UVICORN_GRACEFUL_S + 5)
    assert took["exit_s"] <= UVICORN_GRACEFUL_S + 1
    # The launcher starts the node again; it loads the active models by itself and rejoins.
    assert wait_until(lambda: _rejoined(fleet3, victim, pid), timeout_s=30, interval_s=0.25)
