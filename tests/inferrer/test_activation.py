"""The activation rule of a deploy, in-process: node answers come from a mock transport (the fault
of a node that cannot load a model is hard to provoke otherwise)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from inferrer.app import create_app
from inferrer.settings import InferrerSettings
from wire.bearer import bearer_headers
from wire.node_calls import SyncAnswer, SyncRequest, VersionRef

TOKEN = "activation-test-token"
AUTH = bearer_headers(TOKEN)


class Nodes:
    """Two nodes whose load calls succeed unless told to fail."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        """A sync loads the versions to warm, unless this node is failing; every other call succeeds."""
        node = request.url.host
        if request.url.path != "/internal/v1/sync":
            return httpx.Response(200, json={"ready": True, "models": []})
        warm = SyncRequest.model_validate_json(request.content).warm
        refs = [VersionRef(name=m.name, version=m.version, sha256=m.served_sha256) for m in warm]
        failed = {f"{m.name}/{m.version}": "cannot load this model" for m in warm}
        if node in self.failing:
            answer = SyncAnswer(node=node, loaded=[], failed=failed)
        else:
            answer = SyncAnswer(node=node, loaded=refs, failed={})
        return httpx.Response(200, content=answer.model_dump_json())


@pytest.fixture
def nodes() -> Nodes:
    return Nodes()


@pytest.fixture
def client(tmp_path: Path, nodes: Nodes) -> Iterator[TestClient]:
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(
        json.dumps({"modelhost-1": "http://node-1:8101", "modelhost-2": "http://node-2:8102"})
    )
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        data_dir=tmp_path / "data",
        nodes_file=nodes_file,
        management_token=TOKEN,
    )
    with TestClient(create_app(settings, node_transport=httpx.MockTransport(nodes.handle))) as test_client:
        yield test_client


def _deploy(client: TestClient, model: bytes, **fields: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/models", headers=AUTH, data={"name": "m", **fields}, files={"file": ("m.skops", model)}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_version_no_node_could_load_is_stored_but_not_activated(
    client: TestClient, nodes: Nodes, pipeline_skops: bytes
) -> None:
    nodes.failing = {"node-1", "node-2"}
    first = _deploy(client, pipeline_skops)
    assert (first["activated"], first["active_version"]) == (False, None)
    assert "no node could load it" in str(first["activation"])
    assert sorted(first["nodes_failed"]) == ["modelhost-1", "modelhost-2"]
    view = client.get("/api/v1/models/m").json()
    assert view["active_version"] is None and [v["version"] for v in view["versions"]] == ["1"]
    predicted = client.post("/api/v1/models/m/predict", json={"instances": [[0.0] * 6]})
    assert predicted.status_code == 404, predicted.text

    nodes.failing = {"node-2"}  # one node is enough
    second = _deploy(client, pipeline_skops)
    assert (second["activated"], second["active_version"]) == (True, "2")

    nodes.failing = {"node-1", "node-2"}
    third = _deploy(client, pipeline_skops)
    assert (third["activated"], third["active_version"]) == (False, "2")
    assert client.get("/api/v1/models/m").json()["active_version"] == "2"


def test_a_switch_to_a_version_no_node_can_load_is_refused(
    client: TestClient, nodes: Nodes, pipeline_skops: bytes
) -> None:
    _deploy(client, pipeline_skops)
    _deploy(client, pipeline_skops)
    nodes.failing = {"node-1", "node-2"}
    rolled = client.post("/api/v1/models/m/rollback", headers=AUTH)
    assert rolled.status_code == 503 and "stays '2'" in rolled.json()["error"]
    activated = client.post("/api/v1/models/m/versions/1/activate", headers=AUTH)
    assert activated.status_code == 503
    assert client.get("/api/v1/models/m").json()["active_version"] == "2"
    nodes.failing = set()
    assert client.post("/api/v1/models/m/rollback", headers=AUTH).json()["active_version"] == "1"


def test_staging_with_activate_false_says_so(client: TestClient, pipeline_skops: bytes) -> None:
    _deploy(client, pipeline_skops)
    staged = _deploy(client, pipeline_skops, activate="false")
    assert (staged["activated"], staged["active_version"], staged["activation"]) == (
        False, "1", "staged: activate=false",
    )  # fmt: skip
