"""Nodes on demand on the real fleet (`modelfleet up --min-nodes --max-nodes`): a burst scales the
fleet up within the window and it comes back to the minimum after keep-warm, every request
answered; from zero the first request waits for a cold start and succeeds; a node that cannot
start is retried with backoff and reported while the autoscaler goes on deciding.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from deploy.ephemeral_fleet import RunningFleet, port_is_bound, start_fleet, wait_until
from tests.load_loop import LoadLoop

# Short windows so that a test sees whole cycles: the defaults are for production traffic.
FAST = {
    "INFERRER_AUTOSCALE_TARGET_IN_FLIGHT": "4",
    "INFERRER_AUTOSCALE_KEEP_WARM_S": "3",
    "INFERRER_AUTOSCALE_UP_WINDOW_S": "2",
    "INFERRER_AUTOSCALE_DOWN_WINDOW_S": "2",
    "INFERRER_AUTOSCALE_COOLDOWN_S": "1",
}
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def slow_forest() -> bytes:
    """~20 ms a prediction in scikit-learn: a node, not the test's client, is what the load fills."""
    features, labels = load_iris(return_X_y=True)
    return sio.dumps(RandomForestClassifier(n_estimators=200, random_state=0).fit(features, labels))


def _autoscaled(tmp_path: Path, min_nodes: int, max_nodes: int) -> RunningFleet:
    """Two gateway processes sharing the store: one decides, the other takes over if it dies."""
    env_lines = "".join(f"{k}={v}\n" for k, v in FAST.items())
    return start_fleet(
        tmp_path, nodes=1, env_lines=env_lines,
        extra_args=("--min-nodes", str(min_nodes), "--max-nodes", str(max_nodes), "--no-example",
                    "--inferrer-workers", "2"),
    )  # fmt: skip


def view(fleet: RunningFleet) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(
        f"{fleet.url}/api/v1/autoscaler", headers=fleet.auth, timeout=10
    ).json()
    return answer


def node_ids(fleet: RunningFleet) -> list[str]:
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth, timeout=10).json()["nodes"]
    return [n["id"] for n in nodes]


def node_count(fleet: RunningFleet) -> int:
    return len(node_ids(fleet))


@pytest.fixture(scope="module")
def one_to_four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = _autoscaled(tmp_path_factory.mktemp("autoscaled"), 1, 4)
    answer = fleet.deploy("iris", slow_forest(), runtime="sklearn", batching="false")
    assert answer.status_code == 201, answer.text
    yield fleet
    assert fleet.stop() == 0, fleet.log()


def test_a_burst_scales_up_within_the_window_and_back_after_keep_warm(one_to_four: RunningFleet) -> None:
    fleet = one_to_four
    assert node_count(fleet) == 1
    url = f"{fleet.url}/api/v1/models/iris/predict"
    started = time.monotonic()
    with LoadLoop(url, ROW, max_requests=200_000, max_seconds=90, concurrency=32) as burst:
        assert wait_until(lambda: node_count(fleet) >= 3, timeout_s=30), view(fleet)
        scaled_after = time.monotonic() - started
        # 30 s of burst, and on until the started nodes took traffic (they start slowly on 2 busy cores)
        assert wait_until(lambda: len(burst.mark()) >= 3, timeout_s=80), (burst.report(), view(fleet))
        time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    print(f"\nburst: {burst.report()}; 3+ nodes started after {scaled_after:.1f} s")
    assert burst.failures == [], burst.failures[:5]
    ups = [e for e in view(fleet)["events"] if e["kind"] == "up"]
    assert ups and all(e["nodes_to"] <= 4 for e in ups), ups

    # After the burst: down one node at a time, each drained under a light load, to the minimum.
    with LoadLoop(url, ROW, max_requests=100_000, max_seconds=60, concurrency=2) as light:
        assert wait_until(lambda: node_count(fleet) == 1, timeout_s=60), view(fleet)
    print(f"scale-down under load: {light.report()}")
    assert light.failures == [], light.failures[:5]
    events = view(fleet)["events"]
    downs = [e for e in events if e["kind"] == "down"]
    assert downs and all(e["nodes_from"] - e["nodes_to"] == 1 for e in downs), downs
    assert any(e["kind"] == "stopped" for e in events)
    starts = [e["seconds"] for e in events if e["kind"] == "started"]
    print(f"cold starts: {[round(s, 2) for s in starts]} s; decisions: {[e['reason'] for e in downs + ups]}")
    assert view(fleet)["signals"]["cold_start_s"] is not None


def test_a_node_that_cannot_start_is_retried_and_reported(one_to_four: RunningFleet) -> None:
    """The next node's port taken by another socket: its start fails, is withdrawn and retried with
    backoff; once the port is free it starts, and predictions never failed meanwhile."""
    fleet = one_to_four
    assert wait_until(lambda: node_count(fleet) == 1, timeout_s=60)
    # The last test's scale-down kept the least busy node, not always modelhost-1: the autoscaler
    # starts the first pool node that is not running, on the pool's consecutive loopback ports.
    (kept,) = node_ids(fleet)
    slot = next(n for n in range(1, 5) if f"modelhost-{n}" != kept)
    target, port = f"modelhost-{slot}", fleet.node_ports[0] + slot - 1
    # The last test's stopped nodes may still be draining, their ports held: until they have exited.
    assert wait_until(lambda: not port_is_bound(port), timeout_s=60)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    url = f"{fleet.url}/api/v1/models/iris/predict"
    try:
        with LoadLoop(url, ROW, max_requests=500_000, max_seconds=250, concurrency=16) as load:
            assert wait_until(
                lambda: (
                    sum(e["kind"] == "start_failed" and e["node"] == target for e in view(fleet)["events"])
                    >= 2
                ),
                timeout_s=120,  # each try waits for the nodes started beside it: slow on a busy CI machine
            ), (view(fleet), fleet.log()[-3000:])
            blocker.close()
            assert wait_until(lambda: target in node_ids(fleet), timeout_s=120), view(fleet)
    finally:
        blocker.close()
    failed = [e for e in view(fleet)["events"] if e["kind"] == "start_failed"]
    print(f"\nfailed starts: {[(e['node'], e['reason'][:80]) for e in failed]}; {load.report()}")
    assert sum(e["node"] == target and "exited" in e["reason"] for e in failed) >= 2, failed
    assert load.failures == [], load.failures[:5]


def test_killing_the_deciding_gateway_process_hands_the_decisions_to_the_other(
    one_to_four: RunningFleet,
) -> None:
    fleet = one_to_four
    assert wait_until(lambda: node_count(fleet) == 1, timeout_s=60), view(fleet)
    decider = view(fleet)["decider"]
    assert decider and decider.startswith("gateway-1/")
    killed = time.monotonic()
    os.kill(int(decider.split("/")[1]), signal.SIGKILL)
    assert wait_until(lambda: view_or_none(fleet) not in (None, decider), timeout_s=30)
    handed_over = time.monotonic() - killed
    lease_s = view(fleet)["lease_s"]
    print(f"\ndecider {decider} killed; {view(fleet)['decider']} decides after {handed_over:.1f} s")
    assert handed_over <= lease_s + 3  # the lease, a tick, and the test's own polling
    # ... and it decides: a burst still scales the fleet up
    url = f"{fleet.url}/api/v1/models/iris/predict"
    with LoadLoop(url, ROW, max_requests=200_000, max_seconds=60, concurrency=32) as burst:
        assert wait_until(lambda: node_count(fleet) >= 2, timeout_s=30), view(fleet)
    print(burst.report())


def view_or_none(fleet: RunningFleet) -> str | None:
    """The decider, or None while the killed process's port is answered by no one."""
    try:
        decider: str | None = view(fleet)["decider"]
    except (httpx.HTTPError, ValueError):
        return None
    return decider
