"""Which nodes the fleet has: a JSON file rendered from the topology, re-read when it changes, or
the list that discovery by DNS installs (inferrer/control/node_discovery.py: Swarm, Kubernetes).

`modelfleet render`/`apply` rewrite the file atomically when a node is added or removed, so the
gateway follows membership changes without a restart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

logger = logging.getLogger(__name__)


class NodeDirectory:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._mtime_ns: int | None = None
        self._nodes: dict[str, str] = {}

    def current(self) -> dict[str, str]:
        """Node id -> base URL. A missing or broken file keeps the last good list."""
        if self._path is None:
            return self._nodes
        try:
            mtime_ns = self._path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._nodes = _parse(self._path.read_bytes())
                self._mtime_ns = mtime_ns
        except (OSError, ValueError) as exc:
            logger.warning("cannot read the node list %s: %s", self._path, exc)
        return self._nodes

    def replace(self, nodes: dict[str, str]) -> None:
        """The nodes that discovery found (INFERRER_NODES_DNS, with no file): installed whole."""
        self._nodes = dict(nodes)

    def node_at(self, address: str) -> str:
        """The node id at `host:port` as nginx names it; the address itself when it is not listed
        (compose: nginx reports the resolved container address)."""
        for node, url in self.current().items():
            if url.partition("://")[2] == address:
                return node
        return address


def _parse(raw: bytes) -> dict[str, str]:
    nodes = orjson.loads(raw)
    if not isinstance(nodes, dict) or not all(
        isinstance(url, str) and url.startswith(("http://", "https://")) for url in nodes.values()
    ):
        raise ValueError('expected {"node-id": "http://host:port", ...}')
    return {str(node): url.rstrip("/") for node, url in nodes.items()}
