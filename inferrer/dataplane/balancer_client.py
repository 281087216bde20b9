"""The hot path: calls through nginx on one pooled aiohttp session.

httpx stays for management and status calls, where its cost does not matter. On the predict path it
cost most of the gateway's CPU (measured on a 2-core machine: ~300 req/s per core for httpx against
~1,700 for aiohttp; a py-spy profile of this gateway at concurrency 32 put 69% of its samples inside httpx).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from inferrer.errors import UpstreamTimeout, UpstreamUnavailable
from inferrer.state.node_directory import NodeDirectory
from metrics.definitions import InferrerMetrics
from wire import tracing
from wire.access import current_request_id
from wire.bearer import bearer_headers

_JSON = {"content-type": "application/json"}
_FAILED_TRY = {"502", "503", "504"}


@dataclass
class UpstreamAnswer:
    status_code: int
    content: bytes
    node: str | None


class Upstream(Protocol):
    """Where the data plane sends a balanced call: nginx in the fleet, an in-process fleet in tests."""

    async def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        """`timeout_s`: this call's own limit (a batch job's partition), else the client's."""
        ...

    async def close(self) -> None: ...


class BalancerClient:
    def __init__(
        self,
        nginx_url: str,
        timeout_s: float,
        metrics: InferrerMetrics,
        directory: NodeDirectory,
        token: str | None,
        max_connections: int = 256,
        connect_timeout_s: float = 2.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`token`: the credential the nodes require on every call (the management token)."""
        self._nginx_url = nginx_url
        self._connect_s = connect_timeout_s
        self._auth = bearer_headers(token)
        self._metrics = metrics
        self._directory = directory
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=20, ssl=tls or True),
            timeout=timeout,
            auto_decompress=False,
        )
        # The retry after a failed send: always a new connection, never another kept-alive one
        # that the same nginx reload closed.
        self._fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, force_close=True, ssl=tls or True),
            timeout=timeout,
            auto_decompress=False,
        )

    async def close(self) -> None:
        await self._session.close()
        await self._fresh.close()

    async def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        with tracing.client_span(f"upstream {method}", {"url.path": path}) as span:
            answer = await self._request(method, path, body, timeout_s)
            if span is not None:
                span.set_attributes(
                    {"http.response.status_code": answer.status_code, "modelfleet.node": answer.node or ""}
                )
            return answer

    async def _request(
        self, method: str, path: str, body: bytes | None, timeout_s: float | None
    ) -> UpstreamAnswer:
        headers = {"x-request-id": current_request_id.get(), **self._auth}
        tracing.inject(headers)  # nginx passes it on to the node
        # Only a given timeout: aiohttp reads timeout=None as "no timeout at all".
        own: dict[str, Any] = {}
        if timeout_s is not None:
            own["timeout"] = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._connect_s)
        if body is not None:
            headers.update(_JSON)
        for attempt, session in ((1, self._session), (2, self._fresh)):
            try:
                async with session.request(
                    method, self._nginx_url + path, data=body, headers=headers, **own
                ) as response:
                    content = await response.read()
                    node = response.headers.get("x-modelhost-node")
                    status = response.status
                    self._count_node_failures(response.headers)
                break
            except TimeoutError as exc:
                self._metrics.upstream_failures.labels("timeout").inc()
                raise UpstreamTimeout(f"the fleet did not answer in time: {exc!r}") from None
            except aiohttp.ClientError as exc:
                # nginx closes idle kept-alive connections when it reloads; a request sent on one
                # fails without reaching a node. Balanced calls have no side effects: send once
                # more, on a new connection (the pool may hold several that the reload closed).
                if attempt == 2:
                    self._metrics.upstream_failures.labels("unreachable").inc()
                    raise UpstreamUnavailable(f"the balancer is unreachable: {exc!r}") from None
                self._metrics.upstream_retries.inc()
        if status in (502, 503, 504) and node is None:
            # nginx itself answered: every node it tried failed.
            self._metrics.upstream_failures.labels("no_node").inc()
            raise UpstreamUnavailable(f"no modelhost could serve the request (balancer answered {status})")
        return UpstreamAnswer(status, content, node)

    def _count_node_failures(self, headers: Mapping[str, str]) -> None:
        """nginx lists every node it tried and its status for each ("504, 200"); count the failed."""
        statuses = headers.get("x-upstream-status")
        if not statuses or ("," not in statuses and statuses[0] != "5"):
            return  # one try that did not fail: the common case
        addresses = headers.get("x-upstream-addr", "").split(", ")
        for address, status in zip(addresses, statuses.split(", "), strict=False):
            if status in _FAILED_TRY:
                self._metrics.node_failures.labels(self._directory.node_at(address), status).inc()
