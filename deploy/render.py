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
from deploy.topology import Node, Topology

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
PROMETHEUS_TEMPLATE = ROOT / "metrics" / "prometheus.yml.template"
FRONT_TEMPLATE = ROOT / "nginx" / "front.conf.template"


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
    nginx_runtime: dict[str, str]  # pid, temp dir, listen, stub_status access
    compose: bool

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
            "listen": f"{topology.nginx_host}:{topology.nginx_port}",
            # The exporter runs beside nginx and connects to nginx's address: from that address.
            "stub_status_allow": _own_address(topology.nginx_host),
        },
        compose=False,
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
        },
        compose=True,
    )


def render_nginx(topology: Topology, nodes: Iterable[Node], placement: Placement) -> str:
    timeout_ms = round(topology.upstream_timeout_s * 1000)
    servers = "\n".join(
        f"        server {placement.node_address(node)} max_fails=1 fail_timeout=2s;  # {node.id}"
        for node in nodes
    )
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
        listen=f"{topology.front_host}:{topology.front_port}",
        stub_status_allow=_own_address(topology.front_host or "127.0.0.1"),
    )


def prometheus_storage_flags(topology: Topology, path: str) -> list[str]:
    """Prometheus's data directory and its bounds, the same locally and in compose."""
    return [
        f"--storage.tsdb.path={path}",
        f"--storage.tsdb.retention.time={topology.prometheus_retention_time}",
        f"--storage.tsdb.retention.size={topology.prometheus_retention_size}",
    ]


def render_prometheus(placement: Placement) -> str:
    return _AtTemplate(PROMETHEUS_TEMPLATE.read_text()).substitute(targets_dir=placement.targets_dir_seen)


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
    urls = {node.id: f"http://{placement.node_address(node)}" for node in nodes}
    write_atomic(placement.nodes_json, json.dumps(urls, indent=2) + "\n")


def render_all(topology: Topology, placement: Placement) -> None:
    write_balancer(topology, topology.nodes, placement)
    write_node_list(topology.nodes, placement)
    write_atomic(placement.prometheus_yml, render_prometheus(placement))


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
