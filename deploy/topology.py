"""The fleet's topology, read from one .env file with an entry per modelhost node."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import dotenv_values

DEPLOY_DIR = Path(__file__).resolve().parent
DEFAULT_ENV_FILE = DEPLOY_DIR / ".env"
EXAMPLE_ENV_FILE = DEPLOY_DIR / ".env.example"

_NODE_KEY = re.compile(r"^MODELHOST_(\d+)_(HOST|PORT)$")
_GATEWAY_KEY = re.compile(r"^GATEWAY_(\d+)_HOST$")


class TopologyError(ValueError):
    """The .env file does not describe a usable fleet."""


@dataclass(frozen=True)
class Node:
    index: int
    host: str
    port: int
    scheme: str = field(default="http", compare=False)  # https with TLS_DIR set; not its identity

    @property
    def id(self) -> str:
        return f"modelhost-{self.index}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Topology:
    inferrer_host: str
    inferrer_port: int
    nginx_host: str
    nginx_port: int
    nginx_exporter_port: int
    prometheus_port: int
    nodes: tuple[Node, ...]
    # How long nginx waits for one node's answer before it retries the prediction on another node.
    upstream_timeout_s: float = 10.0
    # The largest request body but uploads, in bytes: nginx's client_max_body_size and the inferrer's
    # INFERRER_MAX_BODY_BYTES both come from it, so the two always agree.
    max_body_bytes: int = 16 * 2**20
    # Bounded disk: each service's log rotates at log_max_bytes, log_max_files kept (the launcher's
    # children and compose's containers alike), and Prometheus drops samples older than its retention
    # time or beyond its retention size.
    log_max_bytes: int = 10 * 2**20
    log_max_files: int = 3
    prometheus_retention_time: str = "15d"
    prometheus_retention_size: str = "1GB"
    # Past one machine: more gateways (GATEWAY_<n>_HOST, n >= 2: an inferrer and its nginx on that
    # host, on the same ports as the first), a front balancer before them all, and Prometheus's host.
    more_gateways: tuple[str, ...] = ()
    front_host: str | None = None
    front_port: int = 8000
    front_exporter_port: int = 9114
    prometheus_host: str = "127.0.0.1"
    first_gateway_host: str | None = None  # INFERRER_HOST as the .env has it (see `for_gateway`)
    first_nginx_host: str | None = None  # NGINX_HOST as the .env has it
    gateway_index: int = 1  # the gateway this topology is run by
    # TLS between every service (`modelfleet certs` writes the folder): https everywhere when set.
    tls_dir: Path | None = None
    # Stream bindings: the broker the fleet runs itself (BROKER_PORT; None: none, or one elsewhere).
    broker_port: int | None = None
    alertmanager: str | None = None  # HOST:PORT the local Prometheus sends alerts to (ALERTMANAGER)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir else "http"

    @property
    def inferrer_url(self) -> str:
        return f"{self.scheme}://{self.inferrer_host}:{self.inferrer_port}"

    @property
    def nginx_url(self) -> str:
        return f"{self.scheme}://{self.nginx_host}:{self.nginx_port}"

    @property
    def gateway_hosts(self) -> tuple[str, ...]:
        """Every gateway's host, the first (INFERRER_HOST) first."""
        return (self.first_gateway_host or self.inferrer_host, *self.more_gateways)

    @property
    def balancer_hosts(self) -> tuple[str, ...]:
        """The host of every gateway's nginx (and of its exporter), the first's first."""
        return (self.first_nginx_host or self.nginx_host, *self.more_gateways)

    @property
    def front_url(self) -> str | None:
        return f"{self.scheme}://{self.front_host}:{self.front_port}" if self.front_host else None

    @property
    def gateway_url_for_nodes(self) -> str:
        """Where nodes fetch the desired state and artifacts: the front balancer when there is one
        (any gateway answers), else the first gateway."""
        return self.front_url or f"{self.scheme}://{self.gateway_hosts[0]}:{self.inferrer_port}"

    def for_gateway(self, index: int) -> Topology:
        """The topology as gateway `index` (1-based) runs it: its inferrer, nginx and nginx's exporter
        on its host (the first keeps NGINX_HOST), the rest unchanged."""
        host = self.gateway_hosts[index - 1]
        nginx_host = self.balancer_hosts[index - 1]
        first, first_nginx = self.gateway_hosts[0], self.balancer_hosts[0]
        return replace(
            self,
            inferrer_host=host,
            nginx_host=nginx_host,
            first_gateway_host=first,
            first_nginx_host=first_nginx,
            gateway_index=index,
        )

    def with_node_count(self, count: int) -> Topology:
        """Keep the first `count` nodes (none: an autoscaled fleet at zero); extend with loopback
        nodes on the following ports."""
        nodes = list(self.nodes[:count])
        while len(nodes) < count:
            last = nodes[-1]
            nodes.append(Node(last.index + 1, "127.0.0.1", last.port + 1, last.scheme))
        return replace(self, nodes=tuple(nodes))


def ensure_env_file(path: Path) -> Path:
    """The first run copies the example topology into place."""
    if not path.exists() and path == DEFAULT_ENV_FILE:
        shutil.copyfile(EXAMPLE_ENV_FILE, path)
    return path


def load_topology(path: Path) -> Topology:
    if not path.exists():
        raise TopologyError(f"topology file {path} not found (copy {EXAMPLE_ENV_FILE})")
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    entries: dict[int, dict[str, str]] = {}
    for key, value in values.items():
        match = _NODE_KEY.match(key)
        if match:
            entries.setdefault(int(match[1]), {})[match[2]] = value
    tls_dir = (path.parent / values["TLS_DIR"]).resolve() if values.get("TLS_DIR") else None
    scheme = "https" if tls_dir else "http"
    nodes = []
    for index in sorted(entries):
        entry = entries[index]
        if set(entry) != {"HOST", "PORT"}:
            raise TopologyError(f"node {index} needs both MODELHOST_{index}_HOST and _PORT")
        nodes.append(Node(index, entry["HOST"], _port(f"MODELHOST_{index}_PORT", entry["PORT"]), scheme))
    if not nodes:
        raise TopologyError(f"{path} has no MODELHOST_<n>_HOST/_PORT entries")
    topology = Topology(
        inferrer_host=_required(values, "INFERRER_HOST"),
        inferrer_port=_port("INFERRER_PORT", _required(values, "INFERRER_PORT")),
        nginx_host=_required(values, "NGINX_HOST"),
        nginx_port=_port("NGINX_PORT", _required(values, "NGINX_PORT")),
        nginx_exporter_port=_port("NGINX_EXPORTER_PORT", _required(values, "NGINX_EXPORTER_PORT")),
        prometheus_port=_port("PROMETHEUS_PORT", _required(values, "PROMETHEUS_PORT")),
        nodes=tuple(nodes),
        upstream_timeout_s=_seconds("UPSTREAM_TIMEOUT_S", values.get("UPSTREAM_TIMEOUT_S", "10")),
        max_body_bytes=_positive_int("MAX_BODY_BYTES", values.get("MAX_BODY_BYTES", str(16 * 2**20))),
        log_max_bytes=_positive_int("LOG_MAX_BYTES", values.get("LOG_MAX_BYTES", str(10 * 2**20))),
        log_max_files=_positive_int("LOG_MAX_FILES", values.get("LOG_MAX_FILES", "3")),
        prometheus_retention_time=_matching(
            "PROMETHEUS_RETENTION_TIME",
            values.get("PROMETHEUS_RETENTION_TIME", "15d"),
            r"[0-9]+(ms|s|m|h|d|w|y)",
        ),
        prometheus_retention_size=_matching(
            "PROMETHEUS_RETENTION_SIZE",
            values.get("PROMETHEUS_RETENTION_SIZE", "1GB"),
            r"[0-9]+(B|KB|MB|GB|TB)",
        ),
        more_gateways=_more_gateways(values),
        front_host=values.get("FRONT_HOST") or None,
        front_port=_port("FRONT_PORT", values.get("FRONT_PORT", "8000")),
        front_exporter_port=_port("FRONT_EXPORTER_PORT", values.get("FRONT_EXPORTER_PORT", "9114")),
        prometheus_host=values.get("PROMETHEUS_HOST") or "127.0.0.1",
        tls_dir=tls_dir,
        # A broker named elsewhere (INFERRER_STREAMS_BROKER_URL) is used in place of one of its own.
        broker_port=_port("BROKER_PORT", values["BROKER_PORT"])
        if values.get("BROKER_PORT") and not values.get("INFERRER_STREAMS_BROKER_URL")
        else None,
        alertmanager=_matching("ALERTMANAGER", values["ALERTMANAGER"], r"[A-Za-z0-9.-]+:[0-9]{1,5}")
        if values.get("ALERTMANAGER")
        else None,
    )
    _check_unique_addresses(topology)
    return topology


def _more_gateways(values: dict[str, str]) -> tuple[str, ...]:
    """GATEWAY_<n>_HOST entries, n >= 2, in order (gateway 1 is INFERRER_HOST)."""
    entries = {int(m[1]): value for key, value in values.items() if (m := _GATEWAY_KEY.match(key)) and value}
    if 1 in entries:
        raise TopologyError("gateway 1 is INFERRER_HOST: number more gateways from GATEWAY_2_HOST")
    return tuple(entries[index] for index in sorted(entries))


def _positive_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise TopologyError(f"{key} must be a positive whole number, not {value!r}")
    return number


def _matching(key: str, value: str, pattern: str) -> str:
    if not re.fullmatch(pattern, value):
        raise TopologyError(f"{key} must look like {pattern}, not {value!r}")
    return value


def _required(values: dict[str, str], key: str) -> str:
    if not values.get(key):
        raise TopologyError(f"the topology needs {key} (see {EXAMPLE_ENV_FILE.name})")
    return values[key]


def _port(key: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise TopologyError(f"{key}={value!r} is not a port number (1-65535)")
    return int(value)


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise TopologyError(f"{key}={value!r} is not a number of seconds (0.1-3600)")
    return seconds


def _check_unique_addresses(topology: Topology) -> None:
    seen: set[tuple[str, int]] = set()
    for node in topology.nodes:
        address = (node.host, node.port)
        if address in seen:
            raise TopologyError(f"two nodes share the address {node.host}:{node.port}")
        seen.add(address)


def add_node_entry(path: Path, host: str | None = None, port: int | None = None) -> Node:
    """Append the next MODELHOST_<n> entry (default: loopback, the port after the last node's)."""
    topology = load_topology(path)
    last = topology.nodes[-1]
    node = Node(last.index + 1, host or "127.0.0.1", port or max(n.port for n in topology.nodes) + 1)
    text = path.read_text()
    separator = "" if text.endswith("\n") else "\n"
    path.write_text(
        f"{text}{separator}MODELHOST_{node.index}_HOST={node.host}\nMODELHOST_{node.index}_PORT={node.port}\n"
    )
    load_topology(path)  # refuse to leave a broken file: the same checks as at start
    return node


def remove_node_entry(path: Path, node_id: str | None = None) -> Node:
    """Remove a node's entry (default: the last node). The fleet drains it on `modelfleet apply`."""
    topology = load_topology(path)
    if len(topology.nodes) == 1:
        raise TopologyError("the fleet needs at least one node")
    node = topology.nodes[-1] if node_id is None else _find(topology, node_id)
    keys = {f"MODELHOST_{node.index}_HOST", f"MODELHOST_{node.index}_PORT"}
    kept = [line for line in path.read_text().splitlines() if line.split("=", 1)[0].strip() not in keys]
    path.write_text("\n".join(kept) + "\n")
    return node


def _find(topology: Topology, node_id: str) -> Node:
    for node in topology.nodes:
        if node.id == node_id:
            return node
    raise TopologyError(f"no node {node_id!r} in the topology")
