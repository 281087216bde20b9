"""The gateway's clients against real faults: a loopback server that drops, stalls or fails."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from inferrer.control.nodes import FleetNodes
from inferrer.dataplane.balancer_client import BalancerClient, UpstreamAnswer
from inferrer.errors import NodeNotFound, UpstreamTimeout, UpstreamUnavailable
from inferrer.state.node_directory import NodeDirectory
from metrics.definitions import InferrerMetrics

OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-modelhost-node: n1\r\n"
    b"content-length: 2\r\n\r\n{}"
)
REGISTRY = CollectorRegistry()
METRICS = InferrerMetrics(REGISTRY)
NGINX_502 = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 5\r\n\r\n<bad>"


TOKEN = "balancer-test-token-9999"


async def _call_through(behaviours: list[str], timeout_s: float = 5.0) -> tuple[UpstreamAnswer, int]:
    """Serve one behaviour per connection: drop (close unanswered), stall, ok, 502. Every request must
    carry the nodes' credential."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        behaviour = behaviours[min(connections, len(behaviours) - 1)]
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        assert f"\r\nauthorization: Bearer {TOKEN}\r\n".encode() in head, head
        if behaviour == "stall":
            await asyncio.sleep(timeout_s * 4)
        elif behaviour in ("ok", "502"):
            writer.write(OK if behaviour == "ok" else NGINX_502)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = BalancerClient(f"http://127.0.0.1:{port}", timeout_s, METRICS, NodeDirectory(None), TOKEN)
    try:
        return await client.request("POST", "/api/v1/models/m/predict", b"{}"), connections
    finally:
        await client.close()
        server.close()


def test_a_dropped_connection_is_retried_once() -> None:
    retries = REGISTRY.get_sample_value("modelfleet_inferrer_upstream_retries_total") or 0.0
    answer, connections = asyncio.run(_call_through(["drop", "ok"]))
    assert (answer.status_code, answer.node, connections) == (200, "n1", 2)
    assert REGISTRY.get_sample_value("modelfleet_inferrer_upstream_retries_total") == retries + 1


def test_a_balancer_that_keeps_dropping_is_a_503() -> None:
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        asyncio.run(_call_through(["drop"]))


def test_a_timeout_is_not_retried() -> None:
    with pytest.raises(UpstreamTimeout):
        asyncio.run(_call_through(["stall"], timeout_s=0.3))


def test_nginx_own_502_means_no_node_could_answer() -> None:
    with pytest.raises(UpstreamUnavailable, match="no modelhost"):
        asyncio.run(_call_through(["502"]))


def test_node_list_follows_its_file(tmp_path: Path) -> None:
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({"modelhost-1": "http://a:1"}))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "dead":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"ready": True, "models": []})

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            nodes = FleetNodes(client, NodeDirectory(nodes_file), 1.0, warm_hold_s=60)
            assert nodes.urls == {"modelhost-1": "http://a:1"}
            nodes_file.write_text(json.dumps({"modelhost-1": "http://a:1", "modelhost-2": "http://dead:2"}))
            statuses = await nodes.statuses()
            assert [(s.id, s.live) for s in statuses] == [("modelhost-1", True), ("modelhost-2", False)]
            synced = await nodes.sync()  # a node that answers outside the contract, and a dead one
            assert "outside the contract" in str(synced["modelhost-1"])
            assert str(synced["modelhost-2"]).startswith("unreachable")
            nodes_file.write_text("not json")
            assert list(nodes.urls) == ["modelhost-1", "modelhost-2"]  # the last good list stays
            with pytest.raises(NodeNotFound):
                await nodes.drain("modelhost-9")

    asyncio.run(scenario())
