"""An in-process fleet: the gateway app and N node apps in one event loop, wired through the app
factories' seams (no sockets, no nginx). The gateway's predictions reach the nodes through an
`Upstream` that takes the nodes in turn, as nginx would; its direct calls (sync, status, drain) go
through an ASGI transport that picks the node by host; each node's calls to the gateway (desired
state, manifests, artifacts) go through an ASGI transport into the gateway app.

The real-process fleet (tests/harness.py) stays for what only real processes show: nginx's retries,
crashes, timeouts, real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from inferrer.app import create_app as create_gateway
from inferrer.dataplane.balancer_client import UpstreamAnswer
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings
from wire.bearer import bearer_headers
from wire.job_answers import UNFINISHED

TOKEN = "in-process-fleet-token-0123456789"
AUTH = bearer_headers(TOKEN)


class NodeUpstream:
    """The balancer's part: each call to the next node in turn; a node's 503 is tried on the next
    one once, as nginx does."""

    def __init__(self, nodes: dict[str, httpx.AsyncClient]) -> None:
        self._nodes = nodes
        self._turn = itertools.cycle(list(nodes))
        self.calls: list[tuple[str, str]] = []  # (node, path), in order

    async def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        headers = {**AUTH, **({"content-type": "application/json"} if body is not None else {})}
        for _ in range(2):
            node = next(self._turn)
            self.calls.append((node, path))
            response = await self._nodes[node].request(method, path, content=body, headers=headers)
            if response.status_code != 503:
                break
        node_header = response.headers.get("x-modelhost-node")
        return UpstreamAnswer(response.status_code, response.content, node_header)

    async def close(self) -> None:
        """The clients belong to the fleet below."""


class ByHost(httpx.AsyncBaseTransport):
    """The gateway's direct calls to a node, routed by the URL's host to that node's app."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self._transports = {host: httpx.ASGITransport(app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no node at {request.url.host}", request=request)
        return await transport.handle_async_request(request)


@dataclass
class InProcessFleet:
    gateway: httpx.AsyncClient  # requests carry no token unless given one (AUTH)
    gateway_app: FastAPI
    nodes: dict[str, httpx.AsyncClient]  # node id -> a client of its app
    upstream: NodeUpstream
    directory: Path = field(default=Path())
    node_apps: dict[str, FastAPI] = field(default_factory=dict)

    async def deploy(self, name: str, artifact: bytes, filename: str = "m.skops", **fields: str) -> Any:
        response = await self.gateway.post(
            "/api/v1/models",
            headers=AUTH,
            data={"name": name, **fields},
            files={"file": (filename, artifact)},
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def finished_job(self, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """A job's view once it is no longer queued or running."""
        deadline = time.monotonic() + timeout_s
        while True:
            view: dict[str, Any] = (await self.gateway.get(f"/api/v1/jobs/{job_id}", headers=AUTH)).json()
            if view["status"] not in UNFINISHED:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not finish in {timeout_s}s: {view}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def in_process_fleet(
    tmp_path: Path,
    nodes: int = 2,
    **gateway_settings: Any,
) -> AsyncIterator[InProcessFleet]:
    """The gateway with `nodes` ready nodes behind it; `gateway_settings` override its settings."""
    node_ids = [f"modelhost-{i}" for i in range(1, nodes + 1)]
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({node: f"http://{node}" for node in node_ids}))
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        data_dir=tmp_path / "data",
        nodes_file=nodes_file,
        management_token=TOKEN,
        **gateway_settings,
    )
    to_gateway = {node: _LateTransport() for node in node_ids}
    node_apps = {
        node: create_node(
            ModelhostSettings(
                node_id=node,
                inferrer_url="http://inferrer",
                management_token=TOKEN,
                cache_dir=tmp_path / "cache" / node,
                data_dir=tmp_path / "data",
                sync_interval_s=0.5,
            ),
            transport=to_gateway[node],
        )
        for node in node_ids
    }
    async with contextlib.AsyncExitStack() as stack:
        node_clients = {
            node: await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{node}")
            )
            for node, app in node_apps.items()
        }
        upstream = NodeUpstream(node_clients)
        gateway_app = create_gateway(settings, upstream=upstream, node_transport=ByHost(node_apps))
        await stack.enter_async_context(gateway_app.router.lifespan_context(gateway_app))
        gateway_transport = httpx.ASGITransport(gateway_app)
        for node, app in node_apps.items():
            to_gateway[node].target = gateway_transport
            await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=gateway_transport, base_url="http://inferrer")
        )
        fleet = InProcessFleet(client, gateway_app, node_clients, upstream, tmp_path, node_apps)
        await _until_ready(fleet)
        yield fleet


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str = "app") -> AsyncIterator[httpx.AsyncClient]:
    """One app, its lifespan entered, and a client of it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            yield client


async def _until_ready(fleet: InProcessFleet) -> None:
    """Every node has synced once (they sync at start)."""
    for _ in range(200):
        answers = [await c.get("/health/ready") for c in fleet.nodes.values()]
        if all(a.status_code == 200 for a in answers):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the in-process nodes never became ready")


class _LateTransport(httpx.AsyncBaseTransport):
    """A node's transport to the gateway, whose app exists only after the nodes do."""

    target: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.target is None:
            raise httpx.ConnectError("the gateway is not up yet", request=request)
        return await self.target.handle_async_request(request)
