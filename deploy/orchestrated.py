"""What the Swarm stack and the Kubernetes manifests share: nginx's config in its container, whose
upstream servers are the file that the DNS watcher keeps, and the one port every node task listens on."""

from __future__ import annotations

from pathlib import Path

from deploy.render import Placement, nginx_tls, render_nginx
from deploy.topology import Topology

SERVERS_FILE = "/tmp/modelfleet/modelhosts.conf"


def orchestrated_nginx(topology: Topology) -> str:
    """nginx's config in its container on Swarm or Kubernetes: the upstream's servers are the file
    that the DNS watcher keeps."""
    unused = Path("/nonexistent")  # nothing is written from this placement: only nginx's runtime counts
    placement = Placement(
        nginx_conf=unused,
        prometheus_yml=unused,
        targets_dir=unused,
        targets_dir_seen=unused,
        nodes_json=unused,
        nginx_runtime={
            "pid_file": "/tmp/nginx.pid",
            "temp_dir": "/tmp",
            "listen": f"0.0.0.0:{topology.nginx_port}",
            "stub_status_allow": "all",  # nginx is not published: only the stack's network
            **nginx_tls(None, "", ""),
        },
        compose=True,
    )
    return render_nginx(topology, [], placement, servers=f"        include {SERVERS_FILE};")


def node_port(topology: Topology) -> int:
    """Every task listens on the first node's port of the .env."""
    return topology.nodes[0].port if topology.nodes else 8101
