"""Render the topology into nginx's config, Prometheus's config and targets, and the node list.

The same renderings serve the local launcher (addresses from the .env, files under the run dir)
and docker-compose (service names, files under deploy/compose/ mounted into the containers).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from datafiles.atomic_file import replace_file
from deploy.certs import ca_file, server_files
from deploy.topology import Node, Topology
from inferrer.settings import InferrerSettings

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
PROMETHEUS_TEMPLATE = ROOT / "metrics" / "prometheus.yml.template"
FRONT_TEMPLATE = ROOT / "nginx" / "front.conf.template"
MONITORING_DIR = ROOT / "monitoring"  # Prometheus's rules and console pages
MONITORING_IN_IMAGE = Path("/etc/modelfleet/monitoring")  # the same, in the Prometheus image
ALERTMANAGER_PORT = 9093  # the compose stack's Alertmanager
# Every platform's Prometheus: a scrape every 5 s, and the rules evaluated as often, so an alert
# fires within a scrape of its `for:` (evaluated every 15 s, it fired up to 15 s later).
PROMETHEUS_GLOBAL = "global:\n  scrape_interval: 5s\n  scrape_timeout: 4s\n  evaluation_interval: 5s\n"


class _AtTemplate(Template):
    delimiter = "@"  # nginx and Prometheus configs use $ themselves


@dataclass(frozen=True)
class Placement:
    """Where the services are seen from (addresses) and where their config files go (paths)."""

    nginx_conf: Path
    prometheus_yml: Path
    targets_dir: Path  # as written here
    targets_dir_seen: Path  # as Prometheus sees it
    nodes_json: Path
    nginx_runtime: dict[str, str]  # pid, temp dir, listen, stub_status access, TLS
    compose: bool
    prometheus_web: Path | None = None  # Prometheus's web config (its TLS), when TLS is on
    ca_file: Path | None = None  # the fleet's CA, when TLS is on
    monitoring_dir_seen: Path = MONITORING_IN_IMAGE  # the rules and consoles, as Prometheus sees them
    alertmanagers: tuple[str, ...] = ()  # where Prometheus sends alerts (HOST:PORT each)

    def address(self, service: str, host: str, port: int) -> str:
        return f"{service if self.compose else host}:{port}"

    def node_address(self, node: Node) -> str:
        return self.address(node.id, node.host, node.port)


def local_placement(topology: Topology, run_dir: Path) -> Placement:
    run_dir = run_dir.resolve()
    return Placement(
        nginx_conf=run_dir / "nginx.conf",
        prometheus_yml=run_dir / "prometheus.yml",
        targets_dir=run_dir / "targets",
        targets_dir_seen=run_dir / "targets",
        nodes_json=run_dir / "nodes.json",
        nginx_runtime={
            "pid_file": str(run_dir / "nginx.pid"),
            "temp_dir": str(run_dir / "nginx-tmp"),
            "listen": f"{topology.nginx_host}:{topology.nginx_port}{' ssl' if topology.tls_dir else ''}",
            # The exporter runs beside nginx and connects to nginx's address: from that address.
            "stub_status_allow": _own_address(topology.nginx_host),
            **nginx_tls(topology, f"nginx-{topology.gateway_index}", "modelhost"),
        },
        compose=False,
        prometheus_web=run_dir / "prometheus-web.yml" if topology.tls_dir else None,
        ca_file=ca_file(topology),
        monitoring_dir_seen=MONITORING_DIR,
        alertmanagers=(topology.alertmanager,) if topology.alertmanager else (),
    )


def compose_placement(topology: Topology, compose_dir: Path) -> Placement:
    return Placement(
        nginx_conf=compose_dir / "nginx" / "nginx.conf",
        prometheus_yml=compose_dir / "prometheus" / "prometheus.yml",
        targets_dir=compose_dir / "prometheus" / "targets",
        targets_dir_seen=Path("/etc/modelfleet/prometheus/targets"),
        nodes_json=compose_dir / "inferrer" / "nodes.json",
        nginx_runtime={
            "pid_file": "/tmp/nginx.pid",
            "temp_dir": "/tmp",
            "listen": f"0.0.0.0:{topology.nginx_port}",
            "stub_status_allow": "all",  # nginx is not published: only the compose network
            **nginx_tls(None, "", ""),  # one host: plain HTTP on the compose network
        },
        compose=True,
        alertmanagers=(f"alertmanager:{ALERTMANAGER_PORT}",),
    )


def render_nginx(
    topology: Topology, nodes: Iterable[Node], placement: Placement, servers: str | None = None
) -> str:
    """nginx's config; the upstream lists `nodes`, or is `servers` (Swarm: an include of the file
    that the DNS watcher keeps)."""
    timeout_ms = round(topology.upstream_timeout_s * 1000)
    servers = servers or "\n".join(
        f"        server {placement.node_address(node)} max_fails=1 fail_timeout=2s;  # {node.id}"
        for node in nodes
    )
    # An upstream needs a server: with no node (autoscaled at zero) one that is down, so nginx
    # answers 502 at once and the gateway holds the request until a node is ready.
    servers = servers or "        server 127.0.0.1:9 down;  # no node runs now"
    return _AtTemplate(NGINX_TEMPLATE.read_text()).substitute(
        servers=servers,
        upstream_timeout=f"{timeout_ms}ms",
        retry_window=f"{2 * timeout_ms + 1000}ms",  # a stalled node, then a whole try on another
        max_body=str(topology.max_body_bytes),
        **placement.nginx_runtime,
    )


def render_front(topology: Topology, run_dir: Path) -> str:
    """The front balancer's config: every gateway behind FRONT_HOST:FRONT_PORT."""
    servers = "\n".join(
        f"        server {host}:{topology.inferrer_port} max_fails=1 fail_timeout=2s;  # gateway {i}"
        for i, host in enumerate(topology.gateway_hosts, start=1)
    )
    return _AtTemplate(FRONT_TEMPLATE.read_text()).substitute(
        servers=servers,
        max_body=str(topology.max_body_bytes),
        pid_file=str(run_dir / "front.pid"),
        temp_dir=str(run_dir / "front-tmp"),
        stub_status_allow=_own_address(topology.front_host or "127.0.0.1"),
        max_upload=str(InferrerSettings.model_fields["max_upload_bytes"].default),
        **nginx_tls(topology, "front", "inferrer"),
        listen=f"{topology.front_host}:{topology.front_port}{' ssl' if topology.tls_dir else ''}",
    )


def prometheus_flags(topology: Topology, path: str, monitoring_dir: Path = MONITORING_IN_IMAGE) -> list[str]:
    """Prometheus's data directory and its bounds, and the fleet's console pages, the same locally
    and in every stack."""
    return [
        f"--storage.tsdb.path={path}",
        f"--storage.tsdb.retention.time={topology.prometheus_retention_time}",
        f"--storage.tsdb.retention.size={topology.prometheus_retention_size}",
        f"--web.console.templates={monitoring_dir / 'consoles'}",
        f"--web.console.libraries={monitoring_dir / 'console_libraries'}",
    ]


def rule_files(monitoring_dir: Path, alertmanagers: tuple[str, ...] = ()) -> str:
    """The config's sections loading the fleet's recording and alerting rules, and naming the
    Alertmanagers its alerts go to (none: the alerts are only on Prometheus's own page)."""
    rules = f"rule_files:\n  - {monitoring_dir / 'rules.yml'}\n"
    if not alertmanagers:
        return rules
    targets = ", ".join(alertmanagers)
    return rules + f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{targets}]\n"


def nginx_tls(topology: Topology | None, cert: str, peer_name: str) -> dict[str, str]:
    """An nginx's TLS: its certificate (`cert`), and its upstream calls verified against the fleet CA
    by the name every peer's certificate carries (`peer_name`: one name for a whole upstream)."""
    files = server_files(topology, cert) if topology else None
    ca = ca_file(topology) if topology else None
    if not files or not ca:
        return {"scheme": "http", "server_tls": "", "upstream_tls": ""}
    server = (
        f"        ssl_certificate {files[0]};\n        ssl_certificate_key {files[1]};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:fleet:10m;\n"
    )
    upstream = (f"        proxy_ssl_trusted_certificate {ca};\n        proxy_ssl_verify on;\n"
                f"        proxy_ssl_name {peer_name};\n        proxy_ssl_session_reuse on;\n")  # fmt: skip
    return {"scheme": "https", "server_tls": server, "upstream_tls": upstream}


def render_prometheus(placement: Placement) -> str:
    """Its config; with TLS, every scrape is https, verified against the fleet CA."""
    scrape_tls = (
        f"\n    scheme: https\n    tls_config:\n      ca_file: {placement.ca_file}"
        if placement.ca_file
        else ""
    )
    return _AtTemplate(PROMETHEUS_TEMPLATE.read_text()).substitute(
        global_section=PROMETHEUS_GLOBAL,
        targets_dir=placement.targets_dir_seen,
        scrape_tls=scrape_tls,
        rule_files=rule_files(placement.monitoring_dir_seen, placement.alertmanagers),
    )


def write_prometheus(topology: Topology, placement: Placement) -> None:
    """Prometheus's config and, with TLS, its web config (the certificate it serves with)."""
    write_atomic(placement.prometheus_yml, render_prometheus(placement))
    files = server_files(topology, "prometheus")
    if placement.prometheus_web and files:
        web = f"tls_server_config:\n  cert_file: {files[0]}\n  key_file: {files[1]}\n"
        write_atomic(placement.prometheus_web, web)


def render_targets(
    topology: Topology, nodes: Iterable[Node], placement: Placement
) -> dict[str, list[dict[str, object]]]:
    """file_sd target groups by job; every node carries its node id as a label."""
    inferrers = [
        placement.address("inferrer", host, topology.inferrer_port) for host in topology.gateway_hosts
    ]
    exporters = [
        placement.address("nginx-exporter", host, topology.nginx_exporter_port)
        for host in topology.balancer_hosts
    ]
    if topology.front_host and not placement.compose:
        exporters.append(f"{topology.front_host}:{topology.front_exporter_port}")
    return {
        "inferrer": [{"targets": inferrers}],
        "modelhost": [
            {"targets": [placement.node_address(node)], "labels": {"node": node.id}} for node in nodes
        ],
        "nginx": [{"targets": exporters}],
    }


def write_balancer(topology: Topology, nodes: Iterable[Node], placement: Placement) -> None:
    """nginx's upstream and Prometheus's targets: the nodes that take traffic."""
    nodes = list(nodes)
    write_atomic(placement.nginx_conf, render_nginx(topology, nodes, placement))
    for job, groups in render_targets(topology, nodes, placement).items():
        write_atomic(placement.targets_dir / f"{job}.json", json.dumps(groups, indent=2) + "\n")


def write_node_list(nodes: Iterable[Node], placement: Placement) -> None:
    """The inferrer's node list (it re-reads the file when it changes)."""
    scheme = "http" if placement.compose else None  # compose: one host, plain HTTP on its network
    urls = {node.id: f"{scheme or node.scheme}://{placement.node_address(node)}" for node in nodes}
    write_atomic(placement.nodes_json, json.dumps(urls, indent=2) + "\n")


def render_all(topology: Topology, placement: Placement) -> None:
    write_balancer(topology, topology.nodes, placement)
    write_node_list(topology.nodes, placement)
    write_prometheus(topology, placement)


def write_atomic(path: Path, text: str) -> None:
    """Readers (nginx -t, Prometheus's file watcher) see the old file or the new one, never half."""
    replace_file(path, [text.encode()])


def _own_address(host: str) -> str:
    """The address the exporter beside nginx connects from when it scrapes `host`: the address the
    host is (a name resolved), or loopback for a wildcard or a loopback address."""
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return "127.0.0.1"
    return "127.0.0.1" if address.is_unspecified or address.is_loopback else str(address)
