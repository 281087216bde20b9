"""inferrer/api/autoscaler.py in-process: the view with autoscaling off (the nodes as they are),
reports recorded or refused whole, management only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.in_process import AUTH, in_process_fleet
from wire.bearer import bearer_headers

pytestmark = pytest.mark.anyio


async def test_the_view_without_autoscaling_and_the_launchers_reports(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=2, inference_token="i" * 43) as fleet:
        gateway = fleet.gateway
        view = (await gateway.get("/api/v1/autoscaler", headers=AUTH)).json()
        assert view["enabled"] is False and view["desired"] is None and view["events"] == []
        assert (view["nodes"], view["ready_nodes"]) == (2, 2)  # nothing decides: as they are

        report = {"node": "modelhost-3", "outcome": "started", "seconds": 4.5}
        assert (
            await gateway.post("/api/v1/autoscaler/reports", json=report, headers=AUTH)
        ).status_code == 200
        failed = {"node": "modelhost-4", "outcome": "start_failed", "seconds": 1.0, "error": "port taken"}
        assert (
            await gateway.post("/api/v1/autoscaler/reports", json=failed, headers=AUTH)
        ).status_code == 200
        for bad in (
            {**report, "seconds": -1},
            {**report, "outcome": "exploded"},
            {**report, "node": ""},
            {**report, "extra": 1},
            {**report, "seconds": False},
            {**report, "seconds": "4"},
            {"node": "modelhost-3"},
        ):
            refused = await gateway.post("/api/v1/autoscaler/reports", json=bad, headers=AUTH)
            assert refused.status_code == 422, (bad, refused.text)
            assert "error" in refused.json()
        for headers in ({}, bearer_headers("i" * 43)):  # the inference token is not enough
            assert (await gateway.get("/api/v1/autoscaler", headers=headers)).status_code in (401, 403)
            sent = await gateway.post("/api/v1/autoscaler/reports", json=report, headers=headers)
            assert sent.status_code in (401, 403)

        view = (await gateway.get("/api/v1/autoscaler", headers=AUTH)).json()
        assert [(e["kind"], e["node"]) for e in view["events"]] == [
            ("start_failed", "modelhost-4"),
            ("started", "modelhost-3"),
        ]
        assert view["events"][0]["reason"] == "port taken"
        assert view["signals"]["cold_start_s"] == 4.5
        metrics = (await gateway.get("/metrics")).text
        assert "modelfleet_autoscaler_cold_start_seconds_count 1.0" in metrics
        assert 'modelfleet_autoscaler_events_total{direction="start_failed",rule="report"} 1.0' in metrics
