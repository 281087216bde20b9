"""`modelfleet up`: the whole fleet as child processes on this machine, stopped together."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from deploy.processes import ManagedProcess, ProcessSpec
from deploy.render import RenderedPaths, render_all
from deploy.topology import Topology

logger = logging.getLogger(__name__)

# uvicorn keeps idle connections longer than nginx's upstream keepalive_timeout (30 s).
UVICORN_KEEPALIVE_S = 65
UVICORN_GRACEFUL_S = 5
RESTART_DELAY_S = 1.0
# Handlers are configured here, at the process edge; modules only call logging.getLogger(__name__).
LOGGING_CONFIG = Path(__file__).resolve().parent / "logging.json"


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
    def prometheus(self) -> Path:
        return self.root / "prometheus"


def _uvicorn(app: str, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", app,
        "--host", host, "--port", str(port),
        "--timeout-keep-alive", str(UVICORN_KEEPALIVE_S),
        "--timeout-graceful-shutdown", str(UVICORN_GRACEFUL_S),
        "--no-access-log",
        "--log-config", str(LOGGING_CONFIG),
    ]  # fmt: skip


@dataclass(frozen=True)
class LaunchOptions:
    sync_interval_s: float | None = None  # None: the node's own default
    nginx_bin: str = "nginx"


# Debian installs nginx in /usr/sbin, which a non-root PATH often lacks.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def process_specs(
    topology: Topology, dirs: DataDirs, paths: RenderedPaths, options: LaunchOptions
) -> list[ProcessSpec]:
    """Every child in start order: inferrer, nodes, nginx, then the optional monitoring."""
    nodes = {node.id: node.url for node in topology.nodes}
    sync_env = {}
    if options.sync_interval_s is not None:
        sync_env["MODELHOST_SYNC_INTERVAL_S"] = str(options.sync_interval_s)
    specs = [
        ProcessSpec(
            "inferrer",
            _uvicorn("inferrer.app:create_app", topology.inferrer_host, topology.inferrer_port),
            f"{topology.inferrer_url}/health/live",
            env={
                "INFERRER_REPOSITORY_DIR": str(dirs.repository),
                "INFERRER_NGINX_URL": topology.nginx_url,
                "INFERRER_NODES": json.dumps(nodes),
            },
        )
    ]
    for node in topology.nodes:
        specs.append(
            ProcessSpec(
                node.id,
                _uvicorn("modelhost.app:create_app", node.host, node.port),
                f"{node.url}/health/ready",
                env={
                    "MODELHOST_NODE_ID": node.id,
                    "MODELHOST_INFERRER_URL": topology.inferrer_url,
                    "MODELHOST_CACHE_DIR": str(dirs.cache(node.id)),
                    **sync_env,
                },
            )
        )
    nginx = shutil.which(options.nginx_bin, path=_SEARCH_PATH)
    if nginx is None:
        raise LaunchError(
            "nginx is not installed. On Debian/Ubuntu: sudo apt-get install -y nginx "
            "(or run the README's setup command)"
        )
    specs.append(
        ProcessSpec(
            "nginx",
            [nginx, "-c", str(paths.nginx_conf), "-e", str(paths.logs_dir / "nginx-error.log")],
            f"{topology.nginx_url}/api/test/ping/startup",
            stop_signal=signal.SIGQUIT,  # graceful: finish in-flight requests
        )
    )
    exporter = shutil.which("prometheus-nginx-exporter")
    if exporter:
        specs.append(
            ProcessSpec(
                "nginx-exporter",
                [
                    exporter,
                    "-nginx.scrape-uri",
                    f"{topology.nginx_url}/stub_status",
                    "-web.listen-address",
                    f"{topology.nginx_host}:{topology.nginx_exporter_port}",
                ],
                f"http://{topology.nginx_host}:{topology.nginx_exporter_port}/metrics",
            )
        )
    else:
        logger.warning("prometheus-nginx-exporter not found: nginx will not be scraped")
    prometheus = shutil.which("prometheus")
    if prometheus:
        specs.append(
            ProcessSpec(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={paths.prometheus_yml}",
                    f"--storage.tsdb.path={dirs.prometheus}",
                    f"--web.listen-address=127.0.0.1:{topology.prometheus_port}",
                ],
                f"http://127.0.0.1:{topology.prometheus_port}/-/ready",
            )
        )
    else:
        logger.warning("prometheus not found: the fleet runs without it (apt-get install -y prometheus)")
    return specs


def check_ports_free(specs: list[ProcessSpec], topology: Topology) -> None:
    addresses = [(topology.inferrer_host, topology.inferrer_port)]
    addresses += [(n.host, n.port) for n in topology.nodes]
    addresses.append((topology.nginx_host, topology.nginx_port))
    names = {s.name for s in specs}
    if "nginx-exporter" in names:
        addresses.append((topology.nginx_host, topology.nginx_exporter_port))
    if "prometheus" in names:
        addresses.append(("127.0.0.1", topology.prometheus_port))
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


class Fleet:
    """Starts the children in order, restarts any that die, and stops them all in order."""

    def __init__(self, specs: list[ProcessSpec], paths: RenderedPaths) -> None:
        pids = paths.run_dir / "pids"
        pids.mkdir(exist_ok=True)
        self.processes = [ManagedProcess(spec, paths.logs_dir, pids) for spec in specs]
        self.stopping = threading.Event()

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Start every child at once (nodes retry until the inferrer answers), then wait for each."""
        for process in self.processes:
            process.start()
        for process in self.processes:
            process.wait_ready(ready_timeout_s)
            logger.info("%s ready (pid %s)", process.spec.name, process.pid)

    def supervise(self) -> None:
        """Until asked to stop: restart any child that died (a node rejoins by itself)."""
        while not self.stopping.wait(0.25):
            for process in self.processes:
                if not process.is_running() and not self.stopping.is_set():
                    logger.warning(
                        "%s exited with code %s; restarting in %.0fs",
                        process.spec.name, process.exit_code(), RESTART_DELAY_S,
                    )  # fmt: skip
                    if self.stopping.wait(RESTART_DELAY_S):
                        return
                    process.start()

    def stop(self) -> None:
        """The gateway first (no new work), then the balancer, the nodes, and monitoring."""
        self.stopping.set()
        for process in self.processes:
            process.stop(timeout_s=UVICORN_GRACEFUL_S + 5)

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, frame: object) -> None:
            self.stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)


def prepare(topology: Topology, data_dir: Path, options: LaunchOptions) -> Fleet:
    dirs = DataDirs(data_dir.resolve())
    paths = render_all(topology, dirs.run)
    specs = process_specs(topology, dirs, paths, options)
    check_ports_free(specs, topology)
    return Fleet(specs, paths)
