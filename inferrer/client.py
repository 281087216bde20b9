"""ModelHostClientManager: the gateway's pooled HTTP clients to the fleet.

Inference and the self-test go through nginx (balanced, retried on another node) on the aiohttp
BalancerClient; broadcasts, status and drain go to each node directly on one httpx.AsyncClient.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from artifacts.manifest import Manifest
from inferrer.balancer_client import BalancerClient, UpstreamAnswer
from inferrer.errors import NodeNotFound, UpstreamUnavailable
from inferrer.node_directory import NodeDirectory


@dataclass
class NodeStatus:
    id: str
    url: str
    live: bool = False
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    models: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class ModelHostClientManager:
    def __init__(
        self,
        client: httpx.AsyncClient,
        balancer: BalancerClient,
        directory: NodeDirectory,
        status_timeout_s: float,
    ) -> None:
        self._client = client
        self._balancer = balancer
        self._directory = directory
        self._status_timeout = httpx.Timeout(status_timeout_s)

    @property
    def nodes(self) -> dict[str, str]:
        return self._directory.current()

    async def predict(self, name: str, body: bytes) -> UpstreamAnswer:
        return await self._balancer.request("POST", f"/api/v1/models/{quote(name, safe='')}/predict", body)

    async def ping(self, item: str) -> UpstreamAnswer:
        return await self._balancer.request("GET", f"/api/test/ping/{quote(item, safe='')}")

    async def broadcast_load(self, manifest: Manifest) -> dict[str, str | None]:
        """Tell every node to load a model; node id -> None when loaded, else the error."""
        body = manifest.model_dump_json().encode()
        return await self._broadcast("POST", "/internal/v1/models/load", body)

    async def broadcast_unload(self, name: str) -> dict[str, str | None]:
        return await self._broadcast("DELETE", f"/internal/v1/models/{quote(name, safe='')}")

    async def _broadcast(self, method: str, path: str, body: bytes | None = None) -> dict[str, str | None]:
        async def one(url: str) -> str | None:
            try:
                response = await self._client.request(
                    method,
                    url + path,
                    content=body,
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                return f"unreachable: {exc!r}"
            return None if response.is_success else f"{response.status_code}: {response.text}"

        nodes = self.nodes
        results = await asyncio.gather(*(one(url) for url in nodes.values()))
        return dict(zip(nodes, results, strict=True))

    async def drain(self, node: str) -> dict[str, Any]:
        """Ask one node to stop taking new inference (it answers 503, so nginx retries elsewhere)."""
        url = self.nodes.get(node)
        if url is None:
            raise NodeNotFound(f"no node {node!r} in the topology")
        try:
            response = await self._client.post(f"{url}/internal/v1/drain", timeout=self._status_timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"node {node} did not accept the drain: {exc!r}") from None
        body: dict[str, Any] = response.json()
        return body

    async def node_statuses(self) -> list[NodeStatus]:
        return list(await asyncio.gather(*(self._status(n, u) for n, u in self.nodes.items())))

    async def _status(self, node: str, url: str) -> NodeStatus:
        status = NodeStatus(id=node, url=url)
        try:
            response = await self._client.get(url + "/", timeout=self._status_timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            status.error = repr(exc)
            return status
        info = response.json()
        status.live = True
        status.ready = bool(info.get("ready"))
        status.draining = bool(info.get("draining"))
        status.in_flight = int(info.get("in_flight", 0))
        status.models = info.get("models", [])
        return status
