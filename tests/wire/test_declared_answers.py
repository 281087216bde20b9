"""Both apps answer what their own OpenAPI documents declare, in-process: every health route while
not ready (503 with `"ready": false`, not an error body) and while ready, and a success body of each
route family, each validated against the schema the app's /openapi.json gives its status.

The in-process fleet is the gateway app with the node app behind it: the gateway's calls to the node
go through a mock transport into the node's TestClient, the node's calls to the gateway read the
gateway's repository. Predictions through nginx (REST, V2, the self-test) are left to
tests/fleet/test_fuzz.py, which checks them on a real fleet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from inferrer.app import create_app as create_gateway
from inferrer.repository import ModelRepository
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings
from tests.declared import assert_declared, declared_schema
from tests.harness import wait_until
from wire.bearer import bearer_headers

TOKEN = "m" * 43
AUTH = bearer_headers(TOKEN)
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
NODE_URL = "http://node-1:8101"
READY_ROUTES = {
    "gateway": {
        "/health/ready",
        "/v2/health/ready",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
    },
    "node": {"/health/ready"},
}


class Documented:
    """An app's TestClient and the OpenAPI document the app serves."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.document: dict[str, Any] = client.get("/openapi.json").json()

    def call(self, method: str, path: str, status: int, *, auth: bool = True, **kwargs: Any) -> Any:
        """Request `path` (a template of the document, filled from `kwargs["path_params"]`), expect
        `status`, and return the body once it conforms to the declared schema."""
        url = path.format(**kwargs.pop("path_params", {}))
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        response = self.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == status, f"{method} {url}: {response.status_code} {response.text}"
        return assert_declared(self.document, method, path, response)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema, or the component it refers to."""
    if "$ref" in schema:
        resolved: dict[str, Any] = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return resolved
    return schema


@pytest.fixture
def lone_node(tmp_path: Path) -> Iterator[Documented]:
    """A node that cannot reach the inferrer: it never syncs, so it is not ready."""
    settings = ModelhostSettings(
        node_id="modelhost-1", inferrer_url=UNREACHABLE, management_token=TOKEN, cache_dir=tmp_path / "cache"
    )
    with TestClient(create_node(settings)) as client:
        yield Documented(client)


def _nodes_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"modelhost-1": url}))
    return path


@pytest.fixture
def stranded_gateway(tmp_path: Path) -> Iterator[Documented]:
    """A gateway whose one node is unreachable: no node is ready."""
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        nodes_file=_nodes_file(tmp_path, UNREACHABLE),
        management_token=TOKEN,
    )
    with TestClient(create_gateway(settings)) as client:
        yield Documented(client)


@dataclass
class InProcessFleet:
    gateway: Documented
    node: Documented


def _serve_repository(repository_dir: Path) -> httpx.MockTransport:
    """The gateway's internal routes, as a node asks them, answered from the gateway's repository."""

    def handle(request: httpx.Request) -> httpx.Response:
        repository = ModelRepository(repository_dir)
        parts = request.url.path.removeprefix("/internal/v1/").split("/")
        if parts == ["desired"]:
            return httpx.Response(200, json=[m.model_dump(mode="json") for m in repository.active()])
        if parts[0] == "manifests" and len(parts) == 3 and parts[1] in repository.names():
            versions = {m.version: m for m in repository.versions(parts[1])}
            if parts[2] in versions:
                return httpx.Response(200, content=versions[parts[2]].model_dump_json())
        if parts[0] == "artifacts" and (path := repository.artifact_path(parts[-1])) is not None:
            return httpx.Response(200, content=path.read_bytes())
        return httpx.Response(404, json={"error": f"no {request.url.path}"})

    return httpx.MockTransport(handle)


def _forward_to(node: TestClient) -> httpx.MockTransport:
    """The gateway's calls to the node, answered by the node app (on its own TestClient thread)."""

    def handle(request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
        answer = node.request(
            request.method, request.url.raw_path.decode(), content=request.content, headers=headers
        )
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    return httpx.MockTransport(handle)


@pytest.fixture
def in_process_fleet(tmp_path: Path) -> Iterator[InProcessFleet]:
    """The gateway with one ready node behind it."""
    repository_dir = tmp_path / "repository"
    ModelRepository(repository_dir)  # created before the node's first sync reads it
    node_settings = ModelhostSettings(
        node_id="modelhost-1",
        inferrer_url="http://inferrer:8000",
        management_token=TOKEN,
        cache_dir=tmp_path / "cache",
        sync_interval_s=0.2,
    )
    gateway_settings = InferrerSettings(
        repository_dir=repository_dir, nodes_file=_nodes_file(tmp_path, NODE_URL), management_token=TOKEN
    )
    with TestClient(create_node(node_settings, transport=_serve_repository(repository_dir))) as node:
        assert wait_until(lambda: node.get("/health/ready").status_code == 200, timeout_s=10)
        gateway_app = create_gateway(gateway_settings, transport=_forward_to(node))
        with TestClient(gateway_app) as gateway:
            yield InProcessFleet(Documented(gateway), Documented(node))


def _deploy(gateway: Documented, model: bytes) -> Any:
    files = {"file": ("m.skops", model)}
    return gateway.call("POST", "/api/v1/models", 201, data={"name": "m"}, files=files)


def test_every_operation_declares_its_success_body_and_each_ready_route_its_503(
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


def test_a_node_that_is_not_ready_answers_as_declared(lone_node: Documented) -> None:
    not_ready = lone_node.call("GET", "/health/ready", 503, auth=False)
    assert not_ready == {
        "ready": False,
        "node": "modelhost-1",
        "reason": "waiting for the first sync with the inferrer",
    }
    assert lone_node.call("GET", "/health/live", 200, auth=False) == {"live": True, "node": "modelhost-1"}
    status = lone_node.call("GET", "/", 200)
    assert (status["ready"], status["models"]) == (False, [])
    lone_node.call("GET", "/api/test/ping/{item}", 200, path_params={"item": "ONE"})
    assert lone_node.call("GET", "/internal/v1/models", 200) == []
    unloaded = lone_node.call("DELETE", "/internal/v1/models/{name}", 200, path_params={"name": "m"})
    assert unloaded["unloaded"] == []
    assert lone_node.call("POST", "/internal/v1/drain", 200)["draining"] is True
    assert "draining" in lone_node.call("GET", "/health/ready", 503, auth=False)["reason"]
    lone_node.call("GET", "/", 401, auth=False)  # and an error, in the error shape


def test_a_gateway_without_a_ready_node_answers_as_declared(
    stranded_gateway: Documented, pipeline_skops: bytes
) -> None:
    gateway = stranded_gateway
    assert gateway.call("GET", "/health/ready", 503) == {"ready": False, "ready_nodes": []}
    assert gateway.call("GET", "/v2/health/ready", 503) == {"ready": False}
    deployed = _deploy(gateway, pipeline_skops)  # stored, but no node could load it
    assert (deployed["activated"], deployed["active_version"]) == (False, None)
    assert list(deployed["nodes_failed"]) == ["modelhost-1"]
    version = {"name": "m", "version": "1"}
    model_ready = gateway.call("GET", "/v2/models/{name}/versions/{version}/ready", 503, path_params=version)
    assert model_ready == {"name": "m", "version": "1", "ready": False}
    gateway.call("GET", "/v2/models/{name}/ready", 404, path_params={"name": "m"})  # none is active
    view = gateway.call("GET", "/api/v1/models/{name}", 200, path_params={"name": "m"})
    assert view["active_version"] is None and [v["version"] for v in view["versions"]] == ["1"]
    assert gateway.call("GET", "/api/v1/models", 200)["models"] == [view]
    gateway.call("GET", "/v2/models/{name}/versions/{version}", 200, path_params=version)
    [entry] = gateway.call("POST", "/v2/repository/index", 200)
    assert entry["state"] == "UNAVAILABLE"
    [node] = gateway.call("GET", "/api/v1/nodes", 200)["nodes"]
    assert node["live"] is False and node["error"]
    assert gateway.call("GET", "/", 200)["nodes"] == 1
    gateway.call("GET", "/health/live", 200)
    gateway.call("GET", "/v2", 200)
    gateway.call("GET", "/v2/health/live", 200)
    deleted = gateway.call("DELETE", "/api/v1/models/{name}", 200, path_params={"name": "m"})
    assert deleted["deleted_versions"] == ["1"]


def test_an_in_process_fleet_answers_as_declared(
    in_process_fleet: InProcessFleet, pipeline_skops: bytes
) -> None:
    gateway, node = in_process_fleet.gateway, in_process_fleet.node
    assert node.call("GET", "/health/ready", 200, auth=False)["ready"] is True
    assert gateway.call("GET", "/health/ready", 200) == {"ready": True, "ready_nodes": ["modelhost-1"]}
    assert gateway.call("GET", "/v2/health/ready", 200) == {"ready": True}

    first = _deploy(gateway, pipeline_skops)
    assert (first["activated"], first["nodes_loaded"], first["nodes_failed"]) == (True, ["modelhost-1"], {})
    assert _deploy(gateway, pipeline_skops)["active_version"] == "2"
    name = {"name": "m"}
    assert gateway.call("GET", "/v2/models/{name}/ready", 200, path_params=name)["version"] == "2"
    [report] = gateway.call("GET", "/api/v1/nodes", 200)["nodes"]
    assert ("m", "2") in {(m["name"], m["version"]) for m in report["models"]}
    index = gateway.call("POST", "/v2/repository/index", 200)
    assert {e["version"]: e["state"] for e in index}["2"] == "READY"  # 1 may be retired (not active)
    rolled_back = gateway.call("POST", "/api/v1/models/{name}/rollback", 200, path_params=name)
    assert rolled_back == {"name": "m", "active_version": "1", "nodes_loaded": ["modelhost-1"]}
    activate = "/api/v1/models/{name}/versions/{version}/activate"
    gateway.call("POST", activate, 200, path_params={"name": "m", "version": "2"})
    metadata = gateway.call("GET", "/v2/models/{name}", 200, path_params=name)
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    unloaded = gateway.call("POST", "/v2/repository/models/{name}/unload", 200, path_params=name)
    assert unloaded["nodes_unloaded"] == ["modelhost-1"]
    loaded = gateway.call("POST", "/v2/repository/models/{name}/load", 200, path_params=name)
    assert loaded == {"name": "m", "version": "2", "nodes_loaded": ["modelhost-1"]}

    # The node's own routes with the active version: a load (it has it), its status, a prediction.
    manifest = gateway.call("GET", "/api/v1/models/{name}", 200, path_params=name)["versions"][-1]
    assert node.call("POST", "/internal/v1/models/load", 200, json=manifest)["version"] == "2"
    assert ("m", "2") in {(m["name"], m["version"]) for m in node.call("GET", "/internal/v1/models", 200)}
    assert node.call("GET", "/", 200)["models"]
    request = {
        "version": "2",
        "sha256": manifest["sha256"],
        "instances": [[0.1] * 6, [0.2] * 6],
        "outputs": ["predict", "predict_proba"],
    }
    predict = "/api/v1/models/{name}/predict"
    predicted = node.call("POST", predict, 200, path_params=name, json=request)
    assert [len(rows) for rows in predicted["outputs"].values()] == [2, 2]

    drained = gateway.call("POST", "/api/v1/nodes/{node}/drain", 200, path_params={"node": "modelhost-1"})
    assert drained == {"node": "modelhost-1", "draining": True, "in_flight": 0}
    assert gateway.call("GET", "/health/ready", 503) == {"ready": False, "ready_nodes": []}
    assert node.call("GET", "/health/ready", 503, auth=False)["reason"] == "draining: leaving the fleet"
