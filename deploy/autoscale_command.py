"""`modelfleet autoscale --compose | --swarm`: nodes that follow the autoscaler on a docker-compose
stack or a Docker Swarm stack, run on the engine's host until Ctrl-C. (`modelfleet up` follows it by
itself; on Kubernetes a HorizontalPodAutoscaler reads the gateway's desired-node metric.)

On compose, nodes are added and removed through the same membership path as `modelfleet apply
--compose`. On Swarm, `docker service scale` sets the node service's replicas, and a start counts
as done when the gateway lists that many ready nodes (the engine's DNS, then its discovery).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from deploy import certs
from deploy.autoscaling import NodeScaler, autoscale_plan
from deploy.compose import COMPOSE_FILE, load_compose_topology
from deploy.compose_apply import ComposeBackend
from deploy.membership import MembershipError, apply_topology
from deploy.render import compose_placement
from deploy.swarm import NODE_SERVICE
from deploy.tokens import management_headers
from deploy.topology import Topology, TopologyError

logger = logging.getLogger(__name__)

SWARM_READY_TIMEOUT_S = 180.0


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    autoscale = commands.add_parser(
        "autoscale",
        help="follow the autoscaler's desired node count on docker-compose or Swarm (Ctrl-C stops)",
    )
    where = autoscale.add_mutually_exclusive_group(required=True)
    where.add_argument("--compose", action="store_true", help="the docker-compose stack")
    where.add_argument("--swarm", action="store_true", help="the Docker Swarm stack")
    autoscale.add_argument("--project", help="docker-compose project name (with --compose)")
    autoscale.add_argument(
        "--compose-file", type=Path, default=COMPOSE_FILE, help="with --compose (%(default)s)"
    )
    autoscale.add_argument("--stack", default="modelfleet", help="the Swarm stack's name (%(default)s)")


class ComposeNodes:
    """The node services of a compose stack (its compose file lists the running ones)."""

    def __init__(
        self, topology: Topology, compose_file: Path, project: str | None, gateway: httpx.Client
    ) -> None:
        self._topology = topology
        self._compose_file = compose_file
        self._backend = ComposeBackend(compose_file, project)
        self._placement = compose_placement(topology, compose_file.parent / "compose")
        self._gateway = gateway

    @property
    def running(self) -> Topology:
        return load_compose_topology(self._topology, self._compose_file)

    def change_to(self, desired: Topology) -> None:
        apply_topology(
            self.running, desired, self._placement, self._backend, self._gateway, stop_when_drain_lasts=True
        )


class SwarmNodes:
    """The node service of a Swarm stack: its replicas are the node count (task slots 1..N)."""

    def __init__(self, topology: Topology, stack: str, gateway: httpx.Client) -> None:
        self._topology = topology
        self._service = f"{stack}_{NODE_SERVICE}"
        self._gateway = gateway

    def _docker(self, *args: str) -> str:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise MembershipError(f"docker {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    @property
    def running(self) -> Topology:
        replicas = self._docker(
            "service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", self._service
        )
        return self._topology.with_node_count(int(replicas.strip()))

    def change_to(self, desired: Topology) -> None:
        count = len(desired.nodes)
        self._docker("service", "scale", "--detach=false", f"{self._service}={count}")
        deadline = time.monotonic() + SWARM_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                nodes = self._gateway.get("/api/v1/nodes", timeout=5).json()["nodes"]
            except (httpx.HTTPError, ValueError, KeyError):
                nodes = []
            if sum(1 for n in nodes if n["ready"]) == count and len(nodes) == count:
                return
            time.sleep(0.5)
        raise MembershipError(
            f"the gateway did not list {count} ready nodes within {SWARM_READY_TIMEOUT_S:.0f} s"
        )


def run(args: argparse.Namespace, topology: Topology, env_file: Path) -> int:
    pool = autoscale_plan(env_file, topology, None, None).pool
    if pool is None:
        raise TopologyError(
            "autoscaling is off: set INFERRER_AUTOSCALE_MAX_NODES above _MIN_NODES in the .env"
        )
    client = httpx.Client(
        base_url=topology.inferrer_url,
        headers=management_headers(env_file),
        timeout=60,
        verify=certs.verify(topology),
    )
    membership: ComposeNodes | SwarmNodes = (
        SwarmNodes(topology, args.stack, client)
        if args.swarm
        else ComposeNodes(topology, args.compose_file, args.project, client)
    )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())

    def gateway() -> httpx.Client:
        return httpx.Client(
            base_url=topology.inferrer_url,
            headers=management_headers(env_file),
            verify=certs.verify(topology),
        )

    scaler = NodeScaler(pool, membership, gateway)
    print(f"following the autoscaler of {topology.inferrer_url}: Ctrl-C stops", flush=True)
    with client:
        while not stopping.wait(0.25):
            for step in scaler.step():
                print(f"{step.node} {step.outcome} in {step.seconds:.1f} s {step.error}".rstrip(), flush=True)
    return 0
