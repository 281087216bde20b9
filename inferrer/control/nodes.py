"""Calls to each node directly (not balanced): "sync now", status, drain.

A node converges to the desired state by one mechanism, its sync (modelhost/sync.py); the gateway
never pushes a model, it only tells nodes to sync now and reads what they answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from artifacts.manifest import Manifest
from inferrer.errors import NodeNotFound, UpstreamUnavailable
from inferrer.state.node_directory import NodeDirectory
from wire.node_calls import SyncAnswer, SyncRequest

# A node's sync: its answer, or why there is none.
SyncResult = SyncAnswer | str


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


class FleetNodes:
    def __init__(
        self, client: httpx.AsyncClient, directory: NodeDirectory, status_timeout_s: float, warm_hold_s: float
    ) -> None:
        """`client`: carries the fleet's management token, with the sync timeout as its default;
        `warm_hold_s`: how long a node keeps a warmed version loaded before it is active."""
        self._warm_hold_s = warm_hold_s
        self._client = client
        self._directory = directory
        self._status_timeout = httpx.Timeout(status_timeout_s)

    @property
    def urls(self) -> dict[str, str]:
        """Node id -> its URL, as the topology says now."""
        return self._directory.current()

    async def sync(self, warm: Sequence[Manifest] = (), release: Sequence[str] = ()) -> dict[str, SyncResult]:
        """Every node syncs now (warming and releasing what is given) and says what it holds."""
        changes = SyncRequest(warm=list(warm), hold_s=self._warm_hold_s, release=list(release))
        body = changes.model_dump_json().encode()

        async def one(url: str) -> SyncResult:
            try:
                response = await self._client.post(
                    url + "/internal/v1/sync", content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError as exc:
                return f"unreachable: {exc!r}"
            if not response.is_success:
                return f"{response.status_code}: {response.text}"
            try:
                return SyncAnswer.model_validate_json(response.content)
            except ValidationError as exc:
                return f"answered outside the contract: {exc}"

        urls = self.urls
        results = await asyncio.gather(*(one(url) for url in urls.values()))
        return dict(zip(urls, results, strict=True))

    async def drain(self, node: str) -> dict[str, Any]:
        """Ask one node to stop taking new inference (it answers 503, so nginx retries elsewhere)."""
        url = self.urls.get(node)
        if url is None:
            raise NodeNotFound(f"no node {node!r} in the topology")
        try:
            response = await self._client.post(f"{url}/internal/v1/drain", timeout=self._status_timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"node {node} did not accept the drain: {exc!r}") from None
        body: dict[str, Any] = response.json()
        return body

    async def ready_nodes(self, holding: str | None = None) -> list[str]:
        """The nodes ready to serve now (asked at once, each within the status timeout); with
        `holding`, only those that have that model loaded. What every readiness route answers."""
        return [
            status.id
            for status in await self.statuses()
            if status.ready and (holding is None or any(m.get("name") == holding for m in status.models))
        ]

    async def statuses(self) -> list[NodeStatus]:
        return list(await asyncio.gather(*(self._status(n, u) for n, u in self.urls.items())))

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
