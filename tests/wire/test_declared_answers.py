"""Both apps answer what their own OpenAPI documents declare, in-process: every health route while
not ready (503 with `"ready": false`, not an error body) and while ready, and a success body of each
route family, each validated against the schema the app's /openapi.json gives its status.

The in-process fleet is tests/in_process.py: the gateway app with a node app behind it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferrer.app import create_app as create_gateway
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings
from tests.declared import assert_declared, declared_schema
from tests.in_process import AUTH, TOKEN, in_process_fleet, serving

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
NODE_URL = "http://node-1:8101"
pytestmark = pytest.mark.anyio
READY_ROUTES = {
    "gateway": {
        "/health/ready",
        "/ping",
        "/v2/health/ready",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
    },
    "node": {"/health/ready"},
}


class Documented:
    """A client of an app and the OpenAPI document the app serves."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document

    @classmethod
    async def of(cls, client: httpx.AsyncClient) -> Documented:
        return cls(client, (await client.get("/openapi.json")).json())

    async def call(self, method: str, path: str, status: int, *, auth: bool = True, **kwargs: Any) -> Any:
        """Request `path` (a template of the document, filled from `kwargs["path_params"]`), expect
        `status`, and return the body once it conforms to the declared schema."""
        url = path.format(**kwargs.pop("path_params", {}))
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        response = await self.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == status, f"{method} {url}: {response.status_code} {response.text}"
        return assert_declared(self.document, method, path, response)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema, or the component it refers to."""
    if "$ref" in schema:
        resolved: dict[str, Any] = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return resolved
    return schema


@pytest.fixture
async def lone_node(tmp_path: Path) -> AsyncIterator[Documented]:
    """A node that cannot reach the inferrer: it never syncs, so it is not ready."""
    settings = ModelhostSettings(
        node_id="modelhost-1", inferrer_url=UNREACHABLE, management_token=TOKEN, cache_dir=tmp_path / "cache"
    )
    async with serving(create_node(settings)) as client:
        yield await Documented.of(client)


@pytest.fixture
async def stranded_gateway(tmp_path: Path) -> AsyncIterator[Documented]:
    """A gateway whose one node is unreachable: no node is ready."""
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({"modelhost-1": UNREACHABLE}))
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        data_dir=tmp_path / "data",
        nodes_file=nodes_file,
        management_token=TOKEN,
    )
    async with serving(create_gateway(settings)) as client:
        yield await Documented.of(client)


@dataclass
class DocumentedFleet:
    gateway: Documented
    node: Documented


@pytest.fixture
async def documented_fleet(tmp_path: Path) -> AsyncIterator[DocumentedFleet]:
    """The gateway with one ready node behind it."""
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        gateway = await Documented.of(fleet.gateway)
        yield DocumentedFleet(gateway, await Documented.of(fleet.nodes["modelhost-1"]))


async def _deploy(gateway: Documented, model: bytes) -> Any:
    files = {"file": ("m.skops", model)}
    return await gateway.call("POST", "/api/v1/models", 201, data={"name": "m"}, files=files)


async def test_every_operation_declares_its_success_body_and_each_ready_route_its_503(
    lone_node: Documented, stranded_gateway: Documented
) -> None:
    for app, documented in {"gateway": stranded_gateway, "node": lone_node}.items():
        document = documented.document
        with_503 = set()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                success = [s for s in operation["responses"] if s.startswith("2")]
                assert len(success) == 1, f"{app} {method} {path}: {success}"
                schema = declared_schema(document, method, path, int(success[0]))
                assert schema, f"{app} {method} {path} declares no success body"
                if "503" in operation["responses"]:
                    with_503.add(path)
                    not_ready = _resolve(document, declared_schema(document, method, path, 503))
                    assert not_ready["properties"]["ready"]["const"] is False, f"{app} {path}"
                    assert not_ready["additionalProperties"] is False, f"{app} {path}"
        assert with_503 == READY_ROUTES[app]


async def test_a_node_that_is_not_ready_answers_as_declared(lone_node: Documented) -> None:
    not_ready = await lone_node.call("GET", "/health/ready", 503, auth=False)
    assert not_ready == {
        "ready": False,
        "node": "modelhost-1",
        "reason": "waiting for the first sync with the inferrer",
    }
    live = await lone_node.call("GET", "/health/live", 200, auth=False)
    assert live == {"live": True, "node": "modelhost-1"}
    status = await lone_node.call("GET", "/", 200)
    assert (status["ready"], status["models"]) == (False, [])
    await lone_node.call("GET", "/api/test/ping/{item}", 200, path_params={"item": "ONE"})
    assert await lone_node.call("GET", "/internal/v1/models", 200) == []
    unreachable = await lone_node.call("POST", "/internal/v1/sync", 424, json={})
    assert "cannot reach the inferrer" in unreachable["error"]
    assert (await lone_node.call("POST", "/internal/v1/drain", 200))["draining"] is True
    assert "draining" in (await lone_node.call("GET", "/health/ready", 503, auth=False))["reason"]
    await lone_node.call("GET", "/", 401, auth=False)  # and an error, in the error shape


async def test_a_gateway_without_a_ready_node_answers_as_declared(
    stranded_gateway: Documented, pipeline_skops: bytes
) -> None:
    gateway = stranded_gateway
    assert await gateway.call("GET", "/health/ready", 503) == {"ready": False, "ready_nodes": []}
    assert await gateway.call("GET", "/v2/health/ready", 503) == {"ready": False}
    deployed = await _deploy(gateway, pipeline_skops)  # stored, but no node could load it
    assert (deployed["activated"], deployed["active_version"]) == (False, None)
    assert list(deployed["nodes_failed"]) == ["modelhost-1"]
    version = {"name": "m", "version": "1"}
    ready = "/v2/models/{name}/versions/{version}/ready"
    model_ready = await gateway.call("GET", ready, 503, path_params=version)
    assert model_ready == {"name": "m", "version": "1", "ready": False}
    await gateway.call("GET", "/v2/models/{name}/ready", 404, path_params={"name": "m"})  # none is active
    view = await gateway.call("GET", "/api/v1/models/{name}", 200, path_params={"name": "m"})
    assert view["active_version"] is None and [v["version"] for v in view["versions"]] == ["1"]
    assert (await gateway.call("GET", "/api/v1/models", 200))["models"] == [view]
    await gateway.call("GET", "/v2/models/{name}/versions/{version}", 200, path_params=version)
    [entry] = await gateway.call("POST", "/v2/repository/index", 200)
    assert entry["state"] == "UNAVAILABLE"
    [node] = (await gateway.call("GET", "/api/v1/nodes", 200))["nodes"]
    assert node["live"] is False and node["error"]
    assert (await gateway.call("GET", "/", 200))["nodes"] == 1
    await gateway.call("GET", "/health/live", 200)
    await gateway.call("GET", "/v2", 200)
    await gateway.call("GET", "/v2/health/live", 200)
    deleted = await gateway.call("DELETE", "/api/v1/models/{name}", 200, path_params={"name": "m"})
    assert deleted["deleted_versions"] == ["1"]


async def test_an_in_process_fleet_answers_as_declared(
    documented_fleet: DocumentedFleet, pipeline_skops: bytes
) -> None:
    gateway, node = documented_fleet.gateway, documented_fleet.node
    assert (await node.call("GET", "/health/ready", 200, auth=False))["ready"] is True
    assert await gateway.call("GET", "/health/ready", 200) == {"ready": True, "ready_nodes": ["modelhost-1"]}
    assert await gateway.call("GET", "/v2/health/ready", 200) == {"ready": True}

    first = await _deploy(gateway, pipeline_skops)
    assert (first["activated"], first["nodes_loaded"], first["nodes_failed"]) == (True, ["modelhost-1"], {})
    assert (await _deploy(gateway, pipeline_skops))["active_version"] == "2"
    name = {"name": "m"}
    assert (await gateway.call("GET", "/v2/models/{name}/ready", 200, path_params=name))["version"] == "2"
    [report] = (await gateway.call("GET", "/api/v1/nodes", 200))["nodes"]
    assert ("m", "2") in {(m["name"], m["version"]) for m in report["models"]}
    index = await gateway.call("POST", "/v2/repository/index", 200)
    assert {e["version"]: e["state"] for e in index}["2"] == "READY"  # 1 may be retired (not active)
    rolled_back = await gateway.call("POST", "/api/v1/models/{name}/rollback", 200, path_params=name)
    assert rolled_back == {"name": "m", "active_version": "1", "nodes_loaded": ["modelhost-1"]}
    activate = "/api/v1/models/{name}/versions/{version}/activate"
    await gateway.call("POST", activate, 200, path_params={"name": "m", "version": "2"})
    metadata = await gateway.call("GET", "/v2/models/{name}", 200, path_params=name)
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    unloaded = await gateway.call("POST", "/v2/repository/models/{name}/unload", 200, path_params=name)
    assert unloaded["nodes_unloaded"] == ["modelhost-1"]
    loaded = await gateway.call("POST", "/v2/repository/models/{name}/load", 200, path_params=name)
    assert loaded == {"name": "m", "version": "2", "nodes_loaded": ["modelhost-1"]}

    # The node's own routes with the active version: a load (it has it), its status, a prediction.
    manifest = (await gateway.call("GET", "/api/v1/models/{name}", 200, path_params=name))["versions"][-1]
    synced = await node.call("POST", "/internal/v1/sync", 200, json={"warm": [manifest]})
    loaded = {(r["name"], r["version"], r["sha256"]) for r in synced["loaded"]}
    served = manifest["served_sha256"]  # its ONNX graph
    assert ("m", "2", served) in loaded
    held = await node.call("GET", "/internal/v1/models", 200)
    assert ("m", "2") in {(m["name"], m["version"]) for m in held}
    assert (await node.call("GET", "/", 200))["models"]
    request = {
        "version": "2",
        "sha256": served,
        "instances": [[0.1] * 6, [0.2] * 6],
        "outputs": ["predict", "predict_proba"],
    }
    predict = "/api/v1/models/{name}/predict"
    predicted = await node.call("POST", predict, 200, path_params=name, json=request)
    assert [len(rows) for rows in predicted["outputs"].values()] == [2, 2]

    one = {"node": "modelhost-1"}
    drained = await gateway.call("POST", "/api/v1/nodes/{node}/drain", 200, path_params=one)
    assert drained == {"node": "modelhost-1", "draining": True, "in_flight": 0}
    assert await gateway.call("GET", "/health/ready", 503) == {"ready": False, "ready_nodes": []}
    not_ready = await node.call("GET", "/health/ready", 503, auth=False)
    assert not_ready["reason"] == "draining: leaving the fleet"
