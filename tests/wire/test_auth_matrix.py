"""Every route of both apps, from their route tables, with no token, a wrong token and each token.

The matrix is generated, so a new route can't escape it: a route is open only if it is listed in
PUBLIC below; every other route refuses a missing or wrong token (401), and a management route
refuses the inference token (403). The requests that are refused change nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from inferrer.app import create_app as create_gateway
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings
from wire.bearer import INFERENCE, MANAGEMENT, bearer_headers

MANAGEMENT_TOKEN = "m" * 43
INFERENCE_TOKEN = "i" * 43
WRONG = bearer_headers("w" * 43)
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PUBLIC = {
    "gateway": {
        "/",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/ping",  # SageMaker's health check: unauthenticated, like /health/ready
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        # The fleet page's files: the data it shows comes from the routes that need the token.
        "/ui",
        "/ui/fleet.js",
        "/ui/fleet.css",
    }
    | DOCS,
    "node": {"/health/live", "/health/ready", "/metrics"} | DOCS,
}
PARAMETERS = {
    "name": "m", "version": "1", "node": "modelhost-1", "sha256": "0" * 64, "item": "x", "job_id": "job-1",
}  # fmt: skip


def _route_table(app: FastAPI) -> Iterator[tuple[str, set[str], list[Any]]]:
    """(path, methods, dependencies) of every route. FastAPI 0.165 keeps included routers as
    objects of their own (`effective_route_contexts`); older versions flatten them into APIRoutes."""
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield context.path, set(context.methods or ()), list(context.dependencies)
        elif isinstance(route, Route):
            yield route.path, set(route.methods or ()), list(getattr(route, "dependencies", []))


def _routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, declared scope) of every route, the plain hot routes included: those check in
    their handler the scope of the documented route with the same path."""
    table = list(_route_table(app))
    declared: dict[tuple[str, str], str] = {}
    for path, methods, dependencies in table:
        ids = {id(d) for d in dependencies}
        scope = "inference" if id(INFERENCE) in ids else "management" if id(MANAGEMENT) in ids else "open"
        for method in methods:
            if declared.get((method, path), "open") == "open":
                declared[(method, path)] = scope
    return sorted((method, path, scope) for (method, path), scope in declared.items() if method != "HEAD")


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMETERS[m[1]], path)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[TestClient]:
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({"modelhost-1": "http://node-1:8101"}))
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        data_dir=tmp_path / "data",
        nodes_file=nodes_file,
        management_token=MANAGEMENT_TOKEN,
        inference_token=INFERENCE_TOKEN,
    )
    # The node answers every call the gateway makes to it (syncs, status) with success.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ready": True, "models": []}))
    with TestClient(create_gateway(settings, node_transport=transport)) as client:
        yield client


@pytest.fixture
def node(tmp_path: Path) -> Iterator[TestClient]:
    settings = ModelhostSettings(
        node_id="modelhost-1",
        inferrer_url="http://127.0.0.1:9",
        cache_dir=tmp_path / "cache",
        management_token=MANAGEMENT_TOKEN,
        sync_interval_s=60,
    )
    with TestClient(create_node(settings)) as client:
        yield client


def _refusals(client: TestClient, app: str) -> dict[str, int]:
    """Call every route without a token, with a wrong one, and (management routes) with the
    inference token; assert each is refused with the error shape, and count the refusals."""
    counts = {"missing": 0, "wrong": 0, "inference": 0, "open": 0}
    for method, path, scope in _routes(client.app):  # type: ignore[arg-type]
        if path in PUBLIC[app]:
            assert scope == "open", (app, path)
            counts["open"] += 1
            continue
        cases = [("missing", {}, 401), ("wrong", WRONG, 401)]
        if scope == "management" or app == "node":  # nodes know only the management token
            cases.append(("inference", bearer_headers(INFERENCE_TOKEN), 403 if app == "gateway" else 401))
        for case, headers, status in cases:
            response = client.request(method, _url(path), headers=headers, content=b"{}")
            assert response.status_code == status, (app, method, path, case, response.text)
            assert response.json()["error"], response.text
            if status == 401:
                assert response.headers["www-authenticate"] == "Bearer"
            counts[case] += 1
    return counts


def test_every_gateway_route_refuses_a_missing_or_wrong_token_and_changes_nothing(
    gateway: TestClient, pipeline_skops: bytes
) -> None:
    deployed = gateway.post(
        "/api/v1/models",
        headers=bearer_headers(MANAGEMENT_TOKEN),
        data={"name": "m"},
        files={"file": ("m.skops", pipeline_skops)},
    )
    assert deployed.status_code == 201, deployed.text
    before = gateway.get("/api/v1/models", headers=bearer_headers(INFERENCE_TOKEN)).json()
    counts = _refusals(gateway, "gateway")
    print(f"gateway routes refused: {counts}")
    assert counts["missing"] >= 20 and counts["inference"] >= 10  # a floor: routes were found
    assert gateway.get("/api/v1/models", headers=bearer_headers(MANAGEMENT_TOKEN)).json() == before


def test_every_node_route_but_health_and_metrics_needs_the_management_token(node: TestClient) -> None:
    counts = _refusals(node, "node")
    print(f"node routes refused: {counts}")
    assert counts["missing"] >= 6
    loaded = node.get("/internal/v1/models", headers=bearer_headers(MANAGEMENT_TOKEN))
    assert loaded.status_code == 200 and loaded.json() == []  # nothing was loaded by a refused call


@pytest.mark.parametrize("inference_token", [INFERENCE_TOKEN, None], ids=["inference token", "none"])
def test_the_documents_declare_the_token_each_route_needs_as_configured(
    tmp_path: Path, inference_token: str | None
) -> None:
    """Each documented operation declares its scope's bearer scheme, as the route table says; with no
    inference token configured, inference routes take any request, so they declare none."""
    gateway = create_gateway(
        InferrerSettings(
            repository_dir=tmp_path,
            data_dir=tmp_path / "data",
            management_token=MANAGEMENT_TOKEN,
            inference_token=inference_token,
        )
    )
    node = create_node(ModelhostSettings(cache_dir=tmp_path, management_token=MANAGEMENT_TOKEN))
    required: dict[str, list[dict[str, list[str]]] | None] = {
        "management": [{"managementToken": []}],
        "inference": [{"inferenceToken": []}] if inference_token else None,
        "open": None,
    }
    inference_schemes = {"inferenceToken"} if inference_token else set()
    for app, schemes in [(gateway, {"managementToken"} | inference_schemes), (node, {"managementToken"})]:
        document = app.openapi()
        documented = 0
        for method, path, scope in _routes(app):
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:  # the internal routes of the gateway are not documented
                assert operation.get("security") == required[scope], (method, path, scope)
                documented += 1
        assert documented >= 7
        assert set(document["components"]["securitySchemes"]) == schemes
