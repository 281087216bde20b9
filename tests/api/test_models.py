"""inferrer/api/models.py in-process, through the app factory: deploy, list, inspect, activate,
roll back, delete, with nodes that sync (tests/in_process.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio
ROWS = {"instances": [[0.1] * 6, [0.2] * 6]}


async def _held(fleet_nodes: dict, name: str) -> dict[str, list[str]]:  # type: ignore[type-arg]
    """Node id -> the versions of `name` it holds."""
    held = {}
    for node, client in fleet_nodes.items():
        models = (await client.get("/", headers=AUTH)).json()["models"]
        held[node] = sorted(m["version"] for m in models if m["name"] == name)
    return held


async def test_a_deploy_is_loaded_by_every_node_then_served(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        deployed = await fleet.deploy("m", pipeline_skops)
        assert (deployed["activated"], deployed["version"]) == (True, "1")
        assert deployed["nodes_loaded"] == ["modelhost-1", "modelhost-2"] and deployed["nodes_failed"] == {}
        assert await _held(fleet.nodes, "m") == {"modelhost-1": ["1"], "modelhost-2": ["1"]}
        answer = await fleet.gateway.post("/api/v1/models/m/predict", headers=AUTH, json=ROWS)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2


async def test_switches_and_a_delete_are_one_sequence_each(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("m", pipeline_skops)
        staged = await fleet.deploy("m", pipeline_skops, activate="false")
        assert (staged["activated"], staged["active_version"]) == (False, "1")
        assert staged["nodes_loaded"] == ["modelhost-1", "modelhost-2"]  # warmed, ready to switch
        gateway = fleet.gateway
        switched = await gateway.post("/api/v1/models/m/versions/2/activate", headers=AUTH)
        assert switched.json() == {
            "name": "m",
            "active_version": "2",
            "nodes_loaded": ["modelhost-1", "modelhost-2"],
        }
        predicted = await gateway.post("/api/v1/models/m/predict", headers=AUTH, json=ROWS)
        assert predicted.json()["version"] == "2"
        rolled = await gateway.post("/api/v1/models/m/rollback", headers=AUTH)
        assert rolled.json()["active_version"] == "1"
        listed = (await gateway.get("/api/v1/models", headers=AUTH)).json()["models"]
        assert [(m["name"], m["active_version"], len(m["versions"])) for m in listed] == [("m", "1", 2)]

        deleted = await gateway.delete("/api/v1/models/m", headers=AUTH)
        assert deleted.json() == {
            "name": "m", "deleted_versions": ["1", "2"], "nodes_unloaded": ["modelhost-1", "modelhost-2"],
        }  # fmt: skip
        assert await _held(fleet.nodes, "m") == {"modelhost-1": [], "modelhost-2": []}
        gone = await gateway.get("/api/v1/models/m", headers=AUTH)
        assert gone.status_code == 404 and gone.json()["error"]


async def test_bad_uploads_are_refused_and_store_nothing(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1, max_upload_bytes=len(pipeline_skops) + 2000) as fleet:
        cases = [
            ({"name": "../x"}, ("m.skops", pipeline_skops), 422),
            ({"name": "m", "version": "a/b"}, ("m.skops", pipeline_skops), 422),
            ({"name": "m"}, ("m.pkl", pipeline_skops), 422),  # pickle: never
            ({"name": "m"}, ("m.joblib", pipeline_skops), 422),  # joblib without trusted=true
            ({"name": "m"}, ("m.skops", b""), 422),
            ({"name": "m"}, ("m.skops", b"not a zip"), 422),
            ({"name": "m"}, ("m.skops", pipeline_skops + b"x" * 5000), 413),
        ]
        for fields, file, status in cases:
            answer = await fleet.gateway.post(
                "/api/v1/models", headers=AUTH, data=fields, files={"file": file}
            )
            assert answer.status_code == status, (fields, file[0], answer.text)
            assert answer.json()["error"]
        assert (await fleet.gateway.get("/api/v1/models", headers=AUTH)).json() == {"models": []}
        models = tmp_path / "repository" / "models"
        assert not models.exists() or not any(models.iterdir())


async def test_a_warmed_version_stays_loaded_until_it_is_switched_to(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    """A node that loaded a version early keeps it while the deploy waits for slower nodes and then
    switches: its periodic syncs (every 0.5 s here) do not retire it as "stored, not active"."""
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("m", pipeline_skops)
        await fleet.deploy("m", pipeline_skops, activate="false")
        await asyncio.sleep(2.0)  # several syncs, each past the 0.5 s idle grace of a stored version
        assert await _held(fleet.nodes, "m") == {"modelhost-1": ["1", "2"], "modelhost-2": ["1", "2"]}
        switched = await fleet.gateway.post("/api/v1/models/m/versions/2/activate", headers=AUTH)
        assert switched.json()["nodes_loaded"] == ["modelhost-1", "modelhost-2"]
