"""Render the topology into nginx's config and Prometheus's config and target files."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from deploy.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
PROMETHEUS_TEMPLATE = ROOT / "metrics" / "prometheus.yml.template"


class _AtTemplate(Template):
    delimiter = "@"  # nginx and Prometheus configs use $ themselves


@dataclass(frozen=True)
class RenderedPaths:
    run_dir: Path

    @property
    def nginx_conf(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def prometheus_yml(self) -> Path:
        return self.run_dir / "prometheus.yml"

    @property
    def targets_dir(self) -> Path:
        return self.run_dir / "targets"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"


def render_nginx(topology: Topology, run_dir: Path) -> str:
    servers = "\n".join(
        f"        server {node.host}:{node.port} max_fails=1 fail_timeout=2s;  # {node.id}"
        for node in topology.nodes
    )
    return _AtTemplate(NGINX_TEMPLATE.read_text()).substitute(
        run_dir=run_dir,
        servers=servers,
        listen=f"{topology.nginx_host}:{topology.nginx_port}",
    )


def render_prometheus(targets_dir: Path) -> str:
    return _AtTemplate(PROMETHEUS_TEMPLATE.read_text()).substitute(targets_dir=targets_dir)


def render_targets(topology: Topology) -> dict[str, list[dict[str, object]]]:
    """file_sd target groups by job; every node carries its node id as a label."""
    return {
        "inferrer": [{"targets": [f"{topology.inferrer_host}:{topology.inferrer_port}"]}],
        "modelhost": [
            {"targets": [f"{node.host}:{node.port}"], "labels": {"node": node.id}} for node in topology.nodes
        ],
        "nginx": [{"targets": [f"{topology.nginx_host}:{topology.nginx_exporter_port}"]}],
    }


def render_all(topology: Topology, run_dir: Path) -> RenderedPaths:
    """Write every rendering under run_dir, each file atomically."""
    paths = RenderedPaths(run_dir.resolve())
    for directory in (paths.run_dir, paths.targets_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (paths.run_dir / "nginx-tmp").mkdir(exist_ok=True)
    write_atomic(paths.nginx_conf, render_nginx(topology, paths.run_dir))
    write_atomic(paths.prometheus_yml, render_prometheus(paths.targets_dir))
    for job, groups in render_targets(topology).items():
        write_atomic(paths.targets_dir / f"{job}.json", json.dumps(groups, indent=2))
    return paths


def write_atomic(path: Path, text: str) -> None:
    """Readers (nginx -t, Prometheus's file watcher) see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
