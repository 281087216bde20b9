"""ModelHostClientManager against faults provoked with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from inferrer.client import ModelHostClientManager
from inferrer.errors import NodeNotFound, UpstreamTimeout, UpstreamUnavailable
from inferrer.node_directory import NodeDirectory


def _manager(handler: httpx.MockTransport, nodes_file: Path | None = None) -> ModelHostClientManager:
    client = httpx.AsyncClient(transport=handler)
    return ModelHostClientManager(client, "http://nginx", NodeDirectory(nodes_file), 1.0)


def test_a_dropped_keepalive_connection_is_retried_once() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ReadError("connection closed by nginx reload")
        return httpx.Response(200, json={"predictions": [1]}, headers={"x-modelhost-node": "n1"})

    answer = asyncio.run(_manager(httpx.MockTransport(handler)).predict("m", b"{}"))
    assert (answer.status_code, answer.node) == (200, "n1")
    assert calls == ["/api/v1/models/m/predict"] * 2


def test_a_balancer_that_stays_down_is_a_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        asyncio.run(_manager(httpx.MockTransport(handler)).predict("m", b"{}"))


def test_a_timeout_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("slow")

    with pytest.raises(UpstreamTimeout):
        asyncio.run(_manager(httpx.MockTransport(handler)).predict("m", b"{}"))
    assert len(calls) == 1


def test_nginx_own_502_means_no_node_could_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with pytest.raises(UpstreamUnavailable, match="no modelhost"):
        asyncio.run(_manager(httpx.MockTransport(handler)).predict("m", b"{}"))


def test_node_list_follows_its_file(tmp_path: Path) -> None:
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({"modelhost-1": "http://a:1"}))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "dead":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"ready": True, "models": []})

    manager = _manager(httpx.MockTransport(handler), nodes_file)
    assert manager.nodes == {"modelhost-1": "http://a:1"}
    nodes_file.write_text(json.dumps({"modelhost-1": "http://a:1", "modelhost-2": "http://dead:2"}))
    statuses = asyncio.run(manager.node_statuses())
    assert [(s.id, s.live) for s in statuses] == [("modelhost-1", True), ("modelhost-2", False)]
    nodes_file.write_text("not json")
    assert list(manager.nodes) == ["modelhost-1", "modelhost-2"]  # the last good list stays
    with pytest.raises(NodeNotFound):
        asyncio.run(manager.drain("modelhost-9"))
