"""inferrer/api/fleet.py in-process, through the app factory: welcome, health, node status, drain
and the self-test through the balancer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_status_self_test_and_drain(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        gateway = fleet.gateway
        assert (await gateway.get("/")).json()["nodes"] == 2
        assert (await gateway.get("/health/ready")).json() == {
            "ready": True, "ready_nodes": ["modelhost-1", "modelhost-2"],
        }  # fmt: skip
        nodes = (await gateway.get("/api/v1/nodes", headers=AUTH)).json()["nodes"]
        assert [(n["id"], n["live"], n["ready"]) for n in nodes] == [
            ("modelhost-1", True, True), ("modelhost-2", True, True),
        ]  # fmt: skip
        selftest = await gateway.post(
            "/api/test/sendtomodelhost", headers=AUTH, json={"data": ["A", "B", "C", "D"]}
        )
        assert selftest.json()["nodes"] == {"modelhost-1": 2, "modelhost-2": 2}
        assert [r["item"] for r in selftest.json()["results"]] == ["A", "B", "C", "D"]
        bodies: list[dict[str, object]] = [{"data": []}, {"data": ["\x00"]}, {"data": "A"}, {}]
        for body in bodies:
            refused = await gateway.post("/api/test/sendtomodelhost", headers=AUTH, json=body)
            assert refused.status_code == 422, body

        drained = await gateway.post("/api/v1/nodes/modelhost-2/drain", headers=AUTH)
        assert drained.json() == {"node": "modelhost-2", "draining": True, "in_flight": 0}
        assert (await gateway.get("/health/ready")).json()["ready_nodes"] == ["modelhost-1"]
        unknown = await gateway.post("/api/v1/nodes/modelhost-9/drain", headers=AUTH)
        assert unknown.status_code == 404
