"""`modelfleet front` and `modelfleet monitor`: a service of the fleet alone on its own host.

- `front`: nginx before every gateway (INFERRER_HOST and each GATEWAY_<n>_HOST) on
  FRONT_HOST:FRONT_PORT, with its Prometheus exporter on FRONT_EXPORTER_PORT.
- `monitor`: Prometheus on PROMETHEUS_HOST:PROMETHEUS_PORT, scraping every gateway, every gateway's
  nginx (through its exporter), the front's, and every node.

Each renders its config from the .env into --data-dir/run, runs in the foreground, restarts what
dies, and stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import threading
import time
from pathlib import Path

from deploy.certs import ca_file
from deploy.local_specs import DataDirs, LaunchError, exporter_specs, is_here, monitoring_specs
from deploy.log_files import RotatingLog
from deploy.processes import ManagedProcess, ProcessSpec, Role
from deploy.render import local_placement, render_front, write_atomic, write_balancer, write_prometheus
from deploy.topology import Topology

_READY_TIMEOUT_S = 60.0
_RESTART_DELAY_S = 1.0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    commands.add_parser("front", help="run the front balancer of the .env's gateways on this host")
    commands.add_parser("monitor", help="run Prometheus for the whole fleet on this host")


def run(command: str, topology: Topology, data_dir: Path) -> int:
    dirs = DataDirs(data_dir.resolve())
    for folder in (dirs.run, dirs.logs, dirs.pids, dirs.run / "front-tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    specs = _front(topology, dirs) if command == "front" else _monitor(topology, dirs)
    return _supervise(specs, dirs, topology)


def _front(topology: Topology, dirs: DataDirs) -> list[ProcessSpec]:
    if not topology.front_host or not is_here(topology.front_host):
        raise LaunchError(f"FRONT_HOST={topology.front_host} is not an address of this host")
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if nginx is None:
        raise LaunchError("nginx is not installed (apt-get install -y nginx)")
    config = dirs.run / "front.conf"
    write_atomic(config, render_front(topology, dirs.run))
    front = str(topology.front_url)
    specs = [
        ProcessSpec(
            "front", [nginx, "-c", str(config), "-e", "stderr"], f"{front}/health/front", Role.BALANCER,
            stop_signal=signal.SIGQUIT, ca_file=ca_file(topology),
        )
    ]  # fmt: skip
    host, port = str(topology.front_host), topology.front_exporter_port
    specs += exporter_specs("front-exporter", topology, front, host, port, "front")
    return specs


def _monitor(topology: Topology, dirs: DataDirs) -> list[ProcessSpec]:
    if not is_here(topology.prometheus_host):
        raise LaunchError(f"PROMETHEUS_HOST={topology.prometheus_host} is not an address of this host")
    placement = local_placement(topology, dirs.run)
    write_balancer(topology, topology.nodes, placement)  # the targets (and an nginx config unused here)
    write_prometheus(topology, placement)
    specs = monitoring_specs(topology, placement, dirs)
    if not specs:
        raise LaunchError("prometheus is not installed (apt-get install -y prometheus)")
    return specs


def _supervise(specs: list[ProcessSpec], dirs: DataDirs, topology: Topology) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    processes = [
        ManagedProcess(
            spec,
            RotatingLog(dirs.logs / f"{spec.name}.log", topology.log_max_bytes, topology.log_max_files),
            dirs.pids,
        )
        for spec in specs
    ]
    try:
        for process in processes:
            process.start()
            deadline = time.monotonic() + _READY_TIMEOUT_S
            while not process.is_ready():
                if not process.is_running() or time.monotonic() > deadline:
                    raise LaunchError(str(process.failed_to_start(_READY_TIMEOUT_S)))
                if stopping.wait(0.2):
                    return 0
            print(f"{process.spec.name} ready at {process.spec.ready_url}", flush=True)
        while not stopping.wait(_RESTART_DELAY_S):
            for process in processes:
                if not process.is_running():
                    process.start()
        return 0
    finally:
        for process in reversed(processes):
            process.stop()
