"""What the local launcher runs: one process spec per service, from the topology."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from deploy.broker import Broker
from deploy.certs import ca_file, server_files
from deploy.processes import ProcessSpec, Role
from deploy.render import Placement, prometheus_flags
from deploy.serve_command import env_name, uvicorn_command
from deploy.tokens import SHARED_STORE_VARIABLES
from deploy.topology import Node, Topology
from inferrer.settings import InferrerSettings
from modelhost.settings import ModelhostSettings
from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers
from wire.tls import TLS_CA_VAR

logger = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The fleet cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class DataDirs:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    def cache(self, node_id: str) -> Path:
        return self.root / "cache" / node_id

    @property
    def data(self) -> Path:
        """Batch jobs' files, shared by the inferrer and the nodes."""
        return self.root / "data"

    @property
    def broker(self) -> Path:
        """The stream broker's append-only file: kept across restarts, as the repository is."""
        return self.root / "broker"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def pids(self) -> Path:
        return self.run / "pids"

    @property
    def launcher_pid(self) -> Path:
        return self.run / "launcher.pid"

    @property
    def apply_result(self) -> Path:
        return self.run / "apply.json"


@dataclass(frozen=True)
class LaunchOptions:
    sync_interval_s: float | None = None  # None: the node's own default
    nginx_bin: str = "nginx"
    # uvicorn worker processes: scale with processes, not threads (CPU-bound predicts share one GIL).
    inferrer_workers: int = 1
    modelhost_workers: int = 1
    # Bearer tokens from the .env, by variable name: every service gets them in its environment.
    tokens: dict[str, str] = field(default_factory=dict)
    # The S3 store's AWS_* variables from the .env: the inferrer and the nodes get them.
    storage_env: dict[str, str] = field(default_factory=dict)
    # MODELFLEET_TRACING_* from the .env: the inferrer and the nodes get them.
    tracing_env: dict[str, str] = field(default_factory=dict)
    # Autoscaled: the INFERRER_AUTOSCALE_* settings for the gateway, and every node the fleet may run.
    autoscale_env: dict[str, str] = field(default_factory=dict)
    node_pool: Topology | None = None
    # Stream bindings: the INFERRER_STREAMS_* settings for the gateway, and the broker to start here.
    streams_env: dict[str, str] = field(default_factory=dict)
    broker: Broker | None = None


# Debian installs nginx in /usr/sbin, which a non-root PATH often lacks.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def runs_here(node: Node) -> bool:
    """Whether a node entry names an address of this machine: the launcher runs such nodes; any
    other runs on its own host (`modelfleet node`)."""
    return is_here(node.host)


def local_gateway(topology: Topology) -> Topology:
    """The topology as the gateway on this machine runs it (the first whose host is here)."""
    for index, host in enumerate(topology.gateway_hosts, start=1):
        if is_here(host):
            return topology.for_gateway(index)
    raise LaunchError(
        f"no gateway of the .env is on this machine (INFERRER_HOST, GATEWAY_<n>_HOST: "
        f"{', '.join(topology.gateway_hosts)}): on a node's host run `modelfleet node`, on the front "
        "balancer's `modelfleet front`, on Prometheus's `modelfleet monitor`"
    )


def is_here(host: str) -> bool:
    """Whether `host` is an address of this machine (one a socket here can bind)."""
    try:
        addresses = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    for family, _, _, _, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False


def node_spec(topology: Topology, node: Node, dirs: DataDirs, options: LaunchOptions) -> ProcessSpec:
    env = {
        env_name(ModelhostSettings, "node_id"): node.id,
        env_name(ModelhostSettings, "inferrer_url"): topology.gateway_url_for_nodes,
        env_name(ModelhostSettings, "cache_dir"): str(dirs.cache(node.id)),
        env_name(ModelhostSettings, "data_dir"): str(dirs.data),
        **options.tokens,
        **{k: v for k, v in options.storage_env.items() if k not in SHARED_STORE_VARIABLES},  # S3 only
        **options.tracing_env,
        **_ca_env(topology),
    }
    if options.sync_interval_s is not None:
        env[env_name(ModelhostSettings, "sync_interval_s")] = str(options.sync_interval_s)
    return ProcessSpec(
        node.id,
        uvicorn_command(
            "modelhost", node.host, node.port, options.modelhost_workers, tls=server_files(topology, node.id)
        ),
        f"{node.url}/health/ready",
        env=env,
        role=Role.NODE,
        ca_file=ca_file(topology),
    )


def process_specs(
    topology: Topology, dirs: DataDirs, placement: Placement, options: LaunchOptions
) -> list[ProcessSpec]:
    """Every child in start order: inferrer, nodes, nginx, then the optional monitoring."""
    specs = [
        ProcessSpec(
            "inferrer",
            uvicorn_command(
                "inferrer",
                topology.inferrer_host,
                topology.inferrer_port,
                options.inferrer_workers,
                tls=server_files(topology, f"inferrer-{topology.gateway_index}"),
            ),
            f"{topology.inferrer_url}/health/live",
            role=Role.GATEWAY,
            ca_file=ca_file(topology),
            env={
                env_name(InferrerSettings, "repository_dir"): str(dirs.repository),
                env_name(InferrerSettings, "gateway_id"): f"gateway-{topology.gateway_index}",
                env_name(InferrerSettings, "data_dir"): str(dirs.data),
                env_name(InferrerSettings, "nginx_url"): topology.nginx_url,
                env_name(InferrerSettings, "nodes_file"): str(placement.nodes_json),
                env_name(InferrerSettings, "max_body_bytes"): str(topology.max_body_bytes),
                **options.tokens,
                **options.storage_env,
                **options.tracing_env,
                **options.autoscale_env,
                **options.streams_env,
                **_ca_env(topology),
            },
        )
    ]
    specs += [node_spec(topology, node, dirs, options) for node in topology.nodes if runs_here(node)]
    if (broker := options.broker) is not None:
        where = f"redis://{broker.host}:{broker.port}"  # for its messages: the URL without the password
        specs.append(ProcessSpec("broker", broker.command(), where, Role.BROKER, ready_check=broker.answers))
    nginx = shutil.which(options.nginx_bin, path=_SEARCH_PATH)
    if nginx is None:
        raise LaunchError(
            "nginx is not installed. On Debian/Ubuntu: sudo apt-get install -y nginx "
            "(or run the README's setup command)"
        )
    specs.append(
        ProcessSpec(
            "nginx",
            [nginx, "-c", str(placement.nginx_conf), "-e", "stderr"],
            # through nginx to a node; with none yet (autoscaled from zero), nginx's own status
            f"{topology.nginx_url}/api/test/ping/startup"
            if topology.nodes
            else f"{topology.nginx_url}/stub_status",
            role=Role.BALANCER,
            ready_headers=bearer_headers(options.tokens.get(MANAGEMENT_TOKEN_VAR)),
            stop_signal=signal.SIGQUIT,  # graceful: finish in-flight requests
            ca_file=ca_file(topology),
        )
    )
    nginx_cert = f"nginx-{topology.gateway_index}"
    specs += exporter_specs("nginx-exporter", topology, topology.nginx_url, topology.nginx_host,
                            topology.nginx_exporter_port, nginx_cert)  # fmt: skip
    if is_here(topology.prometheus_host):  # else on its own host: `modelfleet monitor` there
        specs += monitoring_specs(topology, placement, dirs)
    return specs


def exporter_specs(
    name: str, topology: Topology, nginx_url: str, host: str, port: int, cert: str
) -> list[ProcessSpec]:
    """prometheus-nginx-exporter beside an nginx (`cert`: that nginx's certificate, which it serves
    its metrics with when TLS is on), when it is installed."""
    exporter = shutil.which("prometheus-nginx-exporter")
    if not exporter:
        logger.warning("prometheus-nginx-exporter not found: %s will not be scraped", nginx_url)
        return []
    argv = [
        exporter,
        "-nginx.scrape-uri",
        f"{nginx_url}/stub_status",
        "-web.listen-address",
        f"{host}:{port}",
    ]
    files, ca = server_files(topology, cert), ca_file(topology)
    if files and ca:
        argv += ["-nginx.ssl-ca-cert", str(ca), "-web.secured-metrics", "-web.ssl-server-cert", str(files[0]),
                 "-web.ssl-server-key", str(files[1])]  # fmt: skip
    ready = f"{topology.scheme}://{host}:{port}/metrics"
    return [ProcessSpec(name, argv, ready, role=Role.MONITORING, ca_file=ca)]


def _ca_env(topology: Topology) -> dict[str, str]:
    """The fleet CA for a service's clients, when TLS is on."""
    ca = ca_file(topology)
    return {TLS_CA_VAR: str(ca)} if ca else {}


def monitoring_specs(topology: Topology, placement: Placement, dirs: DataDirs) -> list[ProcessSpec]:
    """Prometheus, when it is installed."""
    prometheus = shutil.which("prometheus")
    if not prometheus:
        logger.warning("prometheus not found: the fleet runs without it (apt-get install -y prometheus)")
        return []
    address = f"{topology.prometheus_host}:{topology.prometheus_port}"
    return [
        ProcessSpec(
            "prometheus",
            [
                prometheus,
                f"--config.file={placement.prometheus_yml}",
                *prometheus_flags(topology, str(dirs.prometheus), placement.monitoring_dir_seen),
                f"--web.listen-address={address}",
                *([f"--web.config.file={placement.prometheus_web}"] if topology.tls_dir else []),
            ],
            f"{topology.scheme}://{address}/-/ready",
            role=Role.MONITORING,
            ca_file=ca_file(topology),
        )
    ]


def check_ports_free(specs: list[ProcessSpec], topology: Topology) -> None:
    addresses = [(topology.inferrer_host, topology.inferrer_port)]
    addresses += [(n.host, n.port) for n in topology.nodes if runs_here(n)]
    addresses.append((topology.nginx_host, topology.nginx_port))
    names = {s.name for s in specs}
    if "nginx-exporter" in names:
        addresses.append((topology.nginx_host, topology.nginx_exporter_port))
    if "prometheus" in names:
        addresses.append((topology.prometheus_host, topology.prometheus_port))
    for host, port in addresses:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise LaunchError(
                    f"{host}:{port} is not free ({exc.strerror}): stop what uses it, "
                    "or change the port in the .env"
                ) from None
