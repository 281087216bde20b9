"""A node killed with SIGKILL: seen as down at once, traffic keeps flowing, it rejoins by itself."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import httpx
import pytest

from tests.harness import RunningFleet, wait_until

pytestmark = pytest.mark.fleet

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def _node_view(fleet: RunningFleet, node: str) -> dict[str, object]:
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth, timeout=5).json()["nodes"]
    return next(n for n in nodes if n["id"] == node)


def test_killed_node_is_reported_and_bypassed_then_rejoins(fleet: RunningFleet) -> None:
    victim = "modelhost-2"
    pid = fleet.pid(victim)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    served: Counter[str] = Counter()
    failures = 0
    with httpx.Client(timeout=10) as client:
        for _ in range(100):
            response = client.post(f"{fleet.url}/api/v1/models/iris/predict", json=ROW)
            if response.status_code == 200:
                served[response.json()["node"]] += 1
            else:
                failures += 1
    print(f"right after SIGKILL of {victim}: {dict(served)}, failed={failures}")
    assert failures == 0

    remaining = 5 - (time.monotonic() - killed_at)
    assert wait_until(lambda: _node_view(fleet, victim)["live"] is False, timeout_s=remaining)
    print(f"{victim} shown as not live {time.monotonic() - killed_at:.2f}s after SIGKILL")

    # The launcher restarts the node; it fetches the active models from the inferrer by itself.
    def rejoined() -> bool:
        view = _node_view(fleet, victim)
        return bool(view["ready"]) and any(m["name"] == "iris" for m in view["models"])  # type: ignore[attr-defined]

    assert wait_until(rejoined, timeout_s=30, interval_s=0.25)
    assert fleet.pid(victim) != pid

    served.clear()
    with httpx.Client(timeout=10) as client:
        for _ in range(60):
            response = client.post(f"{fleet.url}/api/v1/models/iris/predict", json=ROW)
            assert response.status_code == 200
            served[response.json()["node"]] += 1
    print(f"after {victim} rejoined: {dict(served)}")
    assert served[victim] > 0
