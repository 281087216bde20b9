"""Nodes that follow the autoscaler: what runs the nodes reads the desired count the gateway decided
(`GET /api/v1/autoscaler`) and converges through the membership path, so an autoscaled node is an
ordinary node (ready with the active models before nginx sends it traffic; drained before it stops).
Nodes start together (a burst needs them all at once) and stop one at a time. Each start is timed
to ready and reported; a start that fails is withdrawn and reported, and that node is tried again
after a backoff of its own that doubles up to a limit, while the others of the pool start in its
place.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import httpx
from dotenv import dotenv_values
from pydantic import ValidationError

from deploy.membership import MembershipError
from deploy.topology import Node, Topology, TopologyError
from inferrer.scaling.settings import AUTOSCALE_VARIABLES, AutoscaleSettings
from wire.autoscaler_answers import NodeReport

logger = logging.getLogger(__name__)

POLL_S = 0.5
# What a membership change may meet besides a refusal: the engine's command hung, a process that
# could not be started.
SETBACKS = (MembershipError, OSError, subprocess.SubprocessError)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class NodeMembership(Protocol):
    """Where nodes come and go: the running topology, and a change to another one."""

    @property
    def running(self) -> Topology: ...

    def change_to(self, desired: Topology) -> None:
        """Converge (MembershipError when it cannot; added nodes are then withdrawn)."""
        ...


@dataclass
class ScaleStep:
    """What the last step did, for the log and the tests."""

    node: str
    outcome: Literal["started", "start_failed", "stopped", "stop_failed"]
    seconds: float
    error: str = ""


class NodeScaler:
    def __init__(
        self,
        pool: Topology,
        membership: NodeMembership,
        gateway: Callable[[], httpx.Client],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`pool`: every node the fleet may run, in order (the first `max_nodes`); `gateway`: a
        client on the gateway's URL that carries the management token."""
        self._pool = pool
        self._membership = membership
        self._gateway = gateway
        self._clock = clock
        self._next_poll = 0.0
        self._backoff_s: dict[str, float] = {}  # a node that failed to start: its next backoff
        self._retry_at: dict[str, float] = {}  # ... and when it may be tried again

    def step(self) -> list[ScaleStep]:
        """One look at the desired count (at most every POLL_S): the nodes it wants more started
        together, or one node fewer stopped."""
        now = self._clock()
        if now < self._next_poll:
            return []
        self._next_poll = now + POLL_S
        desired = self._desired()
        try:
            running = self._membership.running
        except SETBACKS as exc:  # the engine busy or restarting: look again next time
            logger.warning("autoscaler: the running nodes could not be read: %s", exc)
            return []
        count = len(running.nodes)
        if desired is None or desired == count:
            return []
        if desired > count:
            startable = [
                n for n in self._pool.nodes if n not in running.nodes and self._retry_at.get(n.id, 0.0) <= now
            ]
            return self._add(running, tuple(startable[: desired - count]))
        return [self._remove(running, self._least_busy(running))]

    def _desired(self) -> int | None:
        try:
            with self._gateway() as gateway:
                answer = gateway.get("/api/v1/autoscaler", timeout=5)
            answer.raise_for_status()
            desired = answer.json()["desired"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None  # the gateway restarting: ask again next time
        return desired if isinstance(desired, int) else None

    def _least_busy(self, running: Topology) -> Node:
        """The node to remove: the one with the least in flight (a partition under way takes its
        node's drain longest), the last of those."""
        try:
            with self._gateway() as gateway:
                statuses = gateway.get("/api/v1/nodes", timeout=5).json()["nodes"]
            busy = {s["id"]: int(s["in_flight"]) for s in statuses}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            busy = {}
        return min(reversed(running.nodes), key=lambda n: busy.get(n.id, 0))

    def _add(self, running: Topology, nodes: tuple[Node, ...]) -> list[ScaleStep]:
        if not nodes:
            return []
        started = self._clock()
        names = ", ".join(n.id for n in nodes)
        try:
            self._membership.change_to(replace(running, nodes=running.nodes + nodes))
        except SETBACKS as exc:
            seconds = self._clock() - started
            named = exc.node if isinstance(exc, MembershipError) else None
            failed = nodes if named is None else [n for n in nodes if n.id == named]
            steps = [ScaleStep(n.id, "start_failed", seconds, str(exc)[:2000]) for n in failed]
            for node in failed:
                backoff = self._backoff_s.get(node.id, FIRST_BACKOFF_S)
                self._retry_at[node.id] = self._clock() + backoff
                self._backoff_s[node.id] = min(MAX_BACKOFF_S, 2 * backoff)
            logger.error("autoscaler: %s did not start: %s", names, exc)
        else:
            seconds = self._clock() - started
            steps = [ScaleStep(n.id, "started", seconds) for n in nodes]
            for node in nodes:
                self._backoff_s.pop(node.id, None)
            logger.info("autoscaler: %s ready in %.2f s", names, seconds)
        for step in steps:
            self._report(step)
        return steps

    def _remove(self, running: Topology, node: Node) -> ScaleStep:
        started = self._clock()
        try:
            self._membership.change_to(replace(running, nodes=tuple(n for n in running.nodes if n != node)))
        except SETBACKS as exc:
            logger.error("autoscaler: %s could not be removed: %s", node.id, exc)
            return ScaleStep(node.id, "stop_failed", self._clock() - started, str(exc))
        step = ScaleStep(node.id, "stopped", self._clock() - started)
        logger.info("autoscaler: %s drained and stopped in %.2f s", node.id, step.seconds)
        self._report(step)
        return step

    def _report(self, step: ScaleStep) -> None:
        if step.outcome == "stop_failed":
            return  # logged; the gateway's desired count asks for the removal again
        report = NodeReport(node=step.node, outcome=step.outcome, seconds=step.seconds, error=step.error)
        try:
            with self._gateway() as gateway:
                gateway.post(
                    "/api/v1/autoscaler/reports", json=report.model_dump(), timeout=5
                ).raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("autoscaler: the gateway did not take the report of %s: %r", step.node, exc)


@dataclass(frozen=True)
class AutoscalePlan:
    initial: Topology  # the nodes `modelfleet up` starts with (the minimum when autoscaled)
    gateway_env: dict[str, str]  # INFERRER_AUTOSCALE_* for the gateway
    pool: Topology | None  # every node it may run (the maximum); None: a fixed fleet


def autoscale_plan(
    env_file: Path, topology: Topology, min_nodes: int | None, max_nodes: int | None
) -> AutoscalePlan:
    """The .env's INFERRER_AUTOSCALE_* settings with the command line's minimum and maximum over
    them. Autoscaled (maximum above minimum), the pool is the .env's nodes extended to the maximum
    with loopback nodes on the following ports."""
    prefix = AutoscaleSettings.model_config.get("env_prefix", "")
    given = autoscale_environment(env_file)
    for name, value in (("min_nodes", min_nodes), ("max_nodes", max_nodes)):
        if value is not None:
            given[f"{prefix}{name.upper()}"] = str(value)
    try:
        fields = {k.removeprefix(prefix).lower(): v for k, v in given.items()}
        settings = AutoscaleSettings.model_validate(fields)
    except ValidationError as exc:
        raise TopologyError(f"autoscaler settings: {exc}") from None
    if not settings.limits.enabled:
        if min_nodes is not None or max_nodes is not None:
            raise TopologyError(
                "autoscaling needs --max-nodes above --min-nodes (`--nodes N` is a fixed fleet)"
            )
        return AutoscalePlan(topology, given, None)
    pool = topology.with_node_count(settings.max_nodes)
    return AutoscalePlan(pool.with_node_count(settings.min_nodes), given, pool)


def autoscale_environment(env_file: Path) -> dict[str, str]:
    """The autoscaler's settings the .env sets (INFERRER_AUTOSCALE_*), for the gateway."""
    values = dotenv_values(env_file)
    return {var: value for var in AUTOSCALE_VARIABLES if (value := values.get(var))}
