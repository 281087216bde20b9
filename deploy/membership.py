"""Adding and removing nodes with no failed request, for the local launcher and for compose.

Added nodes start and converge (ready = every active model loaded) before the balancer sends them
traffic. Removed nodes drain first: not ready, out of nginx, in-flight requests
finished, then stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from deploy.render import Placement, write_balancer, write_node_list
from deploy.topology import Node, Topology

logger = logging.getLogger(__name__)


class MembershipError(RuntimeError):
    """A membership change could not complete; the message says where it stopped, and `node` which
    node failed it when one did."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class FleetBackend(Protocol):
    """What differs between the local launcher and compose: how nodes and nginx are handled."""

    def prepare(self, union: Topology) -> None: ...

    def start_node(self, node: Node) -> None: ...

    def reload_balancer(self) -> None: ...

    def stop_node(self, node: Node) -> None: ...

    def finish(self, final: Topology) -> None: ...


@dataclass
class MembershipChange:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def apply_topology(
    current: Topology,
    desired: Topology,
    placement: Placement,
    backend: FleetBackend,
    inferrer: httpx.Client,
    timeout_s: float = 120.0,
    start_failed: Callable[[str], str | None] = lambda node_id: None,
    stop_when_drain_lasts: bool = False,
) -> MembershipChange:
    """`inferrer`: a client on the inferrer's URL that carries the management token;
    `start_failed`: why an added node will never be ready (its process exited), else None.
    Added nodes that are not ready in time are stopped and withdrawn before the error is raised:
    nginx never had them. `stop_when_drain_lasts`: a removed node still busy after `timeout_s`
    (a long job partition, which its job retries) is stopped anyway, instead of the change failing
    with the node drained and out of nginx but still running."""
    added = [node for node in desired.nodes if node not in current.nodes]
    removed = [node for node in current.nodes if node not in desired.nodes]
    union = replace(current, nodes=current.nodes + tuple(added))
    backend.prepare(union)

    for node in added:
        backend.start_node(node)
    write_node_list(union.nodes, placement)  # the gateway sees the new nodes (status, "sync now")
    try:
        _wait_for(inferrer, timeout_s, "ready", {n.id for n in added}, lambda s: s["ready"], start_failed)
    except MembershipError:
        for node in added:
            backend.stop_node(node)
        write_node_list(current.nodes, placement)
        backend.finish(current)  # compose: its file lists the nodes that run
        raise

    for node in removed:
        _post(inferrer, f"/api/v1/nodes/{node.id}/drain")
    write_balancer(desired, desired.nodes, placement)  # nginx upstream and Prometheus targets
    if added or removed:
        backend.reload_balancer()
    try:
        _wait_for(
            inferrer, timeout_s, "idle", {n.id for n in removed},
            lambda s: not s["live"] or s["in_flight"] == 0,
        )  # fmt: skip
    except MembershipError as exc:
        if not stop_when_drain_lasts:
            raise
        logger.warning("stopping the removed nodes anyway: %s", exc)
    for node in removed:
        backend.stop_node(node)
    write_node_list(desired.nodes, placement)
    backend.finish(desired)
    return MembershipChange([n.id for n in added], [n.id for n in removed])


def _post(inferrer: httpx.Client, url: str) -> None:
    try:
        inferrer.post(url, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise MembershipError(f"POST {url} failed: {exc!r}") from None


def _wait_for(
    inferrer: httpx.Client,
    timeout_s: float,
    what: str,
    node_ids: set[str],
    condition: Callable[[dict[str, Any]], bool],
    gave_up: Callable[[str], str | None] = lambda node_id: None,
) -> None:
    if not node_ids:
        return
    deadline = time.monotonic() + timeout_s
    pending = set(node_ids)
    while time.monotonic() < deadline:
        for node_id in sorted(pending):
            if (why := gave_up(node_id)) is not None:
                raise MembershipError(f"{node_id} will not be {what}: {why}", node_id)
        try:
            statuses = inferrer.get("/api/v1/nodes", timeout=5).json()["nodes"]
        except (httpx.HTTPError, ValueError, KeyError):
            statuses = []
        pending = {s["id"] for s in statuses if s["id"] in node_ids and not condition(s)}
        pending |= node_ids - {s["id"] for s in statuses}
        if not pending:
            return
        time.sleep(0.25)
    raise MembershipError(f"nodes not {what} within {timeout_s:.0f}s: {sorted(pending)}")
