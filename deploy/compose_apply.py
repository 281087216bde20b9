"""Membership changes on a running docker-compose stack (`modelfleet apply --compose`)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from deploy.compose import COMPOSE_FILE, render_compose_text, write_compose
from deploy.membership import MembershipError
from deploy.render import write_atomic
from deploy.topology import Node, Topology

NGINX_CONF = "/etc/modelfleet/nginx/nginx.conf"


class ComposeBackend:
    def __init__(self, compose_file: Path = COMPOSE_FILE, project: str | None = None) -> None:
        self.compose_file = compose_file
        self.project = project

    def _compose(self, *args: str) -> str:
        command = ["docker-compose", "-f", str(self.compose_file)]
        if self.project:
            command += ["-p", self.project]
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise MembershipError(f"docker-compose {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def prepare(self, union: Topology) -> None:
        """The compose file lists old and new nodes while the change runs."""
        write_atomic(self.compose_file, render_compose_text(union))

    def start_node(self, node: Node) -> None:
        self._compose("up", "-d", "--no-deps", node.id)

    def reload_balancer(self) -> None:
        self._compose("exec", "-T", "nginx", "nginx", "-t", "-e", "stderr", "-c", NGINX_CONF)
        self._compose("exec", "-T", "nginx", "nginx", "-s", "reload", "-e", "stderr", "-c", NGINX_CONF)
        time.sleep(0.5)  # new workers take over; old ones finish their requests

    def stop_node(self, node: Node) -> None:
        self._compose("stop", node.id)
        self._compose("rm", "-f", node.id)

    def finish(self, final: Topology) -> None:
        write_compose(final, self.compose_file)
