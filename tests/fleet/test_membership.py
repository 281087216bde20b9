"""A node added and removed with one .env entry and `modelfleet apply`, under load: 0 failures."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from deploy.ephemeral_fleet import free_ports, port_is_bound, start_fleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def _prometheus_sees_up(prometheus_url: str, node: str) -> bool:
    result = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": f'up{{node="{node}"}} == 1'})
    return bool(result.json()["data"]["result"])


def test_add_then_remove_a_node_under_load(tmp_path: Path) -> None:
    fleet = start_fleet(tmp_path, nodes=2)
    (new_port,) = free_ports(1)
    try:
        url = f"{fleet.url}/api/v1/models/iris/predict"
        # 16 predictions in flight throughout: the drain of the removed node meets concurrent work.
        with LoadLoop(url, ROW, max_requests=20_000, max_seconds=120, concurrency=16) as load:
            assert wait_until(lambda: load.sent > 50, timeout_s=10)
            added = fleet.cli("nodes", "add", "--port", str(new_port))
            assert added.returncode == 0, added.stderr
            applied = fleet.cli("apply")
            assert applied.returncode == 0, applied.stdout + applied.stderr
            assert json.loads(applied.stdout)["added"] == ["modelhost-3"]
            before = load.mark()
            assert wait_until(lambda: load.nodes["modelhost-3"] > before["modelhost-3"], timeout_s=10)
            print("after adding modelhost-3:", load.report())
            # Prometheus picked the new target up from its file, with no restart.
            assert wait_until(
                lambda: _prometheus_sees_up(fleet.prometheus_url, "modelhost-3"), timeout_s=30, interval_s=1
            )
            removed = fleet.cli("nodes", "remove", "modelhost-3")
            assert removed.returncode == 0, removed.stderr
            applied = fleet.cli("apply")
            assert applied.returncode == 0, applied.stdout + applied.stderr
            assert json.loads(applied.stdout)["removed"] == ["modelhost-3"]
            after_removal = load.mark()
            assert wait_until(lambda: load.sent > sum(after_removal.values()) + 200, timeout_s=30)
        print("whole run:", load.report())
        assert load.failures == [], load.failures[:5]
        assert load.nodes["modelhost-3"] == after_removal["modelhost-3"], "a removed node served"
        nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
        assert [n["id"] for n in nodes] == ["modelhost-1", "modelhost-2"]
        assert not port_is_bound(new_port)
    finally:
        assert fleet.stop() == 0, fleet.log()
    assert not any(port_is_bound(p) for p in fleet.all_ports())
