"""The nodes an orchestrator runs, found by DNS: the addresses a name resolves to, each asked its id.

On Docker Swarm, `tasks.<service>` lists every healthy task of the modelhost service; on Kubernetes,
a headless Service lists its pods. Tasks come and go (`docker service scale`, a rolling update, a
replaced task), so the gateway resolves the name every interval, asks each address which node it is
(the node's status answers its id: `modelhost-<task slot>`, or a StatefulSet pod's name), and
installs the result in the node directory that "sync now", status and drain read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import httpx

from inferrer.state.node_directory import NodeDirectory
from wire.addresses import split_name_and_port

logger = logging.getLogger(__name__)
_ROUNDS_KEPT = 3  # rounds an address that stopped answering keeps its id


class NodeDiscovery:
    def __init__(
        self,
        name_and_port: str,
        scheme: str,
        client: httpx.AsyncClient,
        directory: NodeDirectory,
        interval_s: float,
        status_timeout_s: float,
    ) -> None:
        """`client`: the gateway's client to the nodes (it carries the management token)."""
        self._name, self._port = split_name_and_port(name_and_port)
        self._scheme = scheme
        self._client = client
        self._directory = directory
        self._interval_s = interval_s
        self._timeout = httpx.Timeout(status_timeout_s)
        self._ids: dict[str, str] = {}  # address -> the node id it last answered
        self._misses: dict[str, int] = {}  # address -> rounds since it last answered
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NodeDiscovery:
        await self.refresh()  # the first list before the gateway serves
        self._task = asyncio.create_task(self._every_interval(), name="node-discovery")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception:  # one failed round must not end discovery
                logger.exception("node discovery of %s failed; trying again", self._name)

    async def refresh(self) -> None:
        """Resolve the name now, learn the id of every address, and install the list."""
        addresses = await self._resolve()
        if addresses is None:
            return  # the resolver did not answer: keep the last list
        answers = await asyncio.gather(*(self._node_id(address) for address in addresses))
        answered = {address: node for address, node in zip(addresses, answers, strict=True) if node}
        # An address that did not answer keeps the id it had for a few rounds (a busy node is still a
        # node); then it is dropped (its address may be another pod's by now).
        cached = {
            a: self._ids[a]
            for a in addresses
            if a not in answered and a in self._ids and self._misses.get(a, 0) < _ROUNDS_KEPT
        }
        self._misses = {a: self._misses.get(a, 0) + 1 for a in cached}
        self._ids = answered | cached
        self._directory.replace(self._by_id(answered, cached))

    async def _resolve(self) -> list[str] | None:
        """The name's addresses; [] when it has none (no task runs), None when DNS failed."""
        loop = asyncio.get_running_loop()
        try:
            # IPv4: the nodes listen on 0.0.0.0.
            found = await loop.getaddrinfo(
                self._name, self._port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                return []
            logger.warning("cannot resolve %s: %s", self._name, exc)
            return None
        return sorted({str(info[4][0]) for info in found})

    def _url(self, address: str) -> str:
        return f"{self._scheme}://{address}:{self._port}"

    async def _node_id(self, address: str) -> str | None:
        try:
            response = await self._client.get(self._url(address) + "/", timeout=self._timeout)
            response.raise_for_status()
            node = response.json().get("node")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return node if isinstance(node, str) and node else None

    def _by_id(self, answered: dict[str, str], cached: dict[str, str]) -> dict[str, str]:
        """Node id -> URL. Two addresses with one id (a rolling update starts the new task of a slot
        before it stops the old) both stay listed: the second as `<id>@<address>`; an address that
        answered this round takes the plain id before one that did not."""
        nodes: dict[str, str] = {}
        for address, node in [*sorted(answered.items()), *sorted(cached.items())]:
            nodes[node if node not in nodes else f"{node}@{address}"] = self._url(address)
        return nodes
