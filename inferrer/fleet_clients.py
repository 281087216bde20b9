"""ModelHostClientManager: opens and closes the gateway's two clients to the fleet.

Predictions and the self-test go through nginx on the aiohttp BalancerClient (the hot path: on this
2-core machine aiohttp served ~1,700 calls/s per core against ~300 for httpx). Sync, status and drain
go to each node directly on one httpx.AsyncClient, where the cost does not matter; with
INFERRER_NODES_DNS, discovery asks the nodes their ids on that client too. Both carry the
fleet's management token, which the nodes require. Tests replace either: `upstream` stands in for
the balancer, `node_transport` for the httpx transport (an in-process fleet, or a faulty one).
"""

from __future__ import annotations

from types import TracebackType

import httpx

from inferrer.control.node_discovery import NodeDiscovery
from inferrer.control.nodes import FleetNodes
from inferrer.dataplane.balancer_client import BalancerClient, Upstream
from inferrer.settings import InferrerSettings
from inferrer.state.node_directory import NodeDirectory
from metrics.definitions import InferrerMetrics
from wire.bearer import bearer_headers
from wire.tls import client_context


class ModelHostClientManager:
    def __init__(
        self,
        settings: InferrerSettings,
        metrics: InferrerMetrics,
        directory: NodeDirectory,
        upstream: Upstream | None = None,
        node_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._directory = directory
        self._upstream = upstream
        self._node_transport = node_transport

    async def __aenter__(self) -> tuple[Upstream, FleetNodes]:
        """The balancer (or the injected upstream) and the nodes' direct client, both open."""
        settings = self._settings
        self._client = httpx.AsyncClient(
            transport=self._node_transport,
            limits=httpx.Limits(max_connections=settings.node_max_connections),
            timeout=httpx.Timeout(settings.node_sync_timeout_s, connect=settings.connect_timeout_s),
            headers=bearer_headers(settings.management_token),
            verify=client_context(settings.tls_ca_file) or True,
        )
        self._balancer = self._upstream or BalancerClient(
            settings.nginx_url,
            settings.max_request_timeout_s,
            self._metrics,
            self._directory,
            settings.management_token,
            settings.balancer_max_connections,
            settings.connect_timeout_s,
            client_context(settings.tls_ca_file),
        )
        self._discovery: NodeDiscovery | None = None
        if settings.nodes_dns:
            scheme = "https" if settings.tls_ca_file else "http"
            self._discovery = NodeDiscovery(
                settings.nodes_dns, scheme, self._client, self._directory,
                settings.nodes_dns_interval_s, settings.status_timeout_s,
            )  # fmt: skip
            await self._discovery.__aenter__()
        # A warmed version stays loaded on a node while the slowest node may still be loading it.
        hold_s = 2 * settings.node_sync_timeout_s
        return self._balancer, FleetNodes(self._client, self._directory, settings.status_timeout_s, hold_s)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._discovery is not None:
            await self._discovery.__aexit__(kind, exc, tb)
        if self._upstream is None:  # an injected upstream belongs to whoever injected it
            await self._balancer.close()
        await self._client.aclose()
