"""inferrer/api/internal.py in-process, through the app factory: what nodes read (the desired state,
manifests, artifacts by sha256), with the management token only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.in_process import AUTH, in_process_fleet
from wire.bearer import bearer_headers
from wire.node_calls import DesiredState

pytestmark = pytest.mark.anyio


async def test_nodes_read_the_desired_state_and_artifacts(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1, inference_token="i" * 43) as fleet:
        await fleet.deploy("m", pipeline_skops)
        await fleet.deploy("m", pipeline_skops, activate="false")
        gateway = fleet.gateway
        desired = DesiredState.model_validate_json(
            (await gateway.get("/internal/v1/desired", headers=AUTH)).content
        )
        assert [(m.name, m.version) for m in desired.load] == [("m", "1")]
        assert [(r.name, r.version) for r in desired.keep] == [("m", "1"), ("m", "2")]
        sha256 = desired.load[0].sha256
        artifact = await gateway.get(f"/internal/v1/artifacts/{sha256}", headers=AUTH)
        assert hashlib.sha256(artifact.content).hexdigest() == sha256
        manifest = (await gateway.get("/internal/v1/manifests/m/2", headers=AUTH)).json()
        assert manifest["version"] == "2"
        assert (await gateway.get("/internal/v1/artifacts/NOT-HEX", headers=AUTH)).status_code == 422
        assert (await gateway.get(f"/internal/v1/artifacts/{'0' * 64}", headers=AUTH)).status_code == 404
        assert (await gateway.get("/internal/v1/manifests/m/9", headers=AUTH)).status_code == 404
        for headers in ({}, bearer_headers("i" * 43)):  # nothing without the management token
            assert (await gateway.get("/internal/v1/desired", headers=headers)).status_code in (401, 403)
        assert "/internal/v1/desired" not in (await gateway.get("/openapi.json")).json()["paths"]
