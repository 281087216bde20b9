"""`modelfleet up`: the whole fleet as child processes on this machine, stopped together.

`modelfleet apply` asks a running launcher (SIGHUP) to converge to the .env: new nodes start and
load the active models before nginx sends them traffic; removed nodes drain, then stop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import httpx

from datafiles.atomic_file import replace_file
from deploy.autoscaling import NodeScaler
from deploy.certs import verify
from deploy.local_specs import (
    DataDirs,
    LaunchError,
    LaunchOptions,
    check_ports_free,
    local_gateway,
    node_spec,
    process_specs,
    runs_here,
)
from deploy.log_files import RotatingLog
from deploy.membership import MembershipError, apply_topology
from deploy.processes import ManagedProcess, ProcessSpec, Role
from deploy.render import Placement, local_placement, render_all
from deploy.serve_command import UVICORN_GRACEFUL_S
from deploy.topology import Node, Topology, TopologyError, load_topology
from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers

logger = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0


class Fleet:
    """Starts the children, restarts any that die, applies .env changes, stops them all in order."""

    def __init__(self, topology: Topology, env_file: Path, dirs: DataDirs, options: LaunchOptions) -> None:
        self.topology = topology
        self.env_file = env_file
        self.dirs = dirs
        self.options = options
        self.placement: Placement = local_placement(topology, dirs.run)
        render_all(topology, self.placement)
        specs = process_specs(topology, dirs, self.placement, options)
        check_ports_free(specs, topology)
        self.processes = [self.managed(spec) for spec in specs]
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.scaler: NodeScaler | None = None
        self._readied = 0  # progress at start: children ready so far, of all
        if options.node_pool is not None:  # autoscaled: the nodes follow the gateway's desired count
            self.scaler = NodeScaler(options.node_pool, _ScaledNodes(self), self.inferrer_client)

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Start the serving children at once (nodes retry until the inferrer answers) and wait for
        each, then monitoring: nginx's exporter exits at start when nginx does not answer yet."""
        replace_file(self.dirs.launcher_pid, [f"{os.getpid()}\n".encode()])
        serving = [p for p in self.processes if p.spec.role is not Role.MONITORING]
        monitoring = [p for p in self.processes if p.spec.role is Role.MONITORING]
        logger.info(
            "starting %d processes: %s", len(self.processes), ", ".join(p.spec.name for p in self.processes)
        )
        for group in (serving, monitoring):
            for process in group:
                process.start()
            self._wait_ready(group, ready_timeout_s)

    def _wait_ready(self, group: list[ManagedProcess], timeout_s: float) -> None:
        """Until every child of `group` is ready. One that dies after it was ready, or is killed by a
        signal (while the others start: the nodes need the gateway), is restarted, as the supervisor
        would; one that exits by itself before it was ever ready fails the start (a port taken, a
        bad setting), as does one not ready within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        waiting, ready_once = list(group), set()
        while waiting and not self.stopping.is_set():
            for process in group:
                if not process.is_running():
                    killed = (process.exit_code() or 0) < 0
                    if process.spec.name not in ready_once and not killed:
                        raise process.failed_to_start(timeout_s)
                    logger.warning("%s exited while the fleet started; restarting it", process.spec.name)
                    if self.stopping.wait(RESTART_DELAY_S):
                        return
                    process.start()
                    waiting += [] if process in waiting else [process]
            for process in list(waiting):
                if process.is_ready():
                    self._readied += process.spec.name not in ready_once
                    progress = f"[{self._readied}/{len(self.processes)}]"
                    logger.info("%s %s ready (pid %s)", progress, process.spec.name, process.pid)
                    ready_once.add(process.spec.name)
                    waiting.remove(process)
            if waiting and time.monotonic() > deadline:
                raise waiting[0].failed_to_start(timeout_s)
            self.stopping.wait(0.1)

    def supervise(self, until: Callable[[], bool] = lambda: False) -> None:
        """Until asked to stop (or `until` holds): restart any child that died, apply the .env when
        asked."""
        while not self.stopping.wait(0.25) and not until():
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.apply_env_file()
            if self.scaler is not None:
                self.scaler.step()
            for process in self.processes:
                if not process.is_running() and not self.stopping.is_set():
                    logger.warning(
                        "%s exited with code %s; restarting in %.0fs",
                        process.spec.name, process.exit_code(), RESTART_DELAY_S,
                    )  # fmt: skip
                    if self.stopping.wait(RESTART_DELAY_S):
                        return
                    process.start()

    def apply_env_file(self) -> None:
        """Converge to the .env's nodes; the outcome goes to run/apply.json for `modelfleet apply`."""
        if self.scaler is not None:
            error = "the autoscaler sets the node count: change --min-nodes/--max-nodes and restart"
            self.dirs.apply_result.write_text(json.dumps({"ok": False, "error": error, "at": time.time()}))
            return
        try:
            desired = local_gateway(load_topology(self.env_file))
            with self.inferrer_client() as inferrer:
                change = apply_topology(self.topology, desired, self.placement, _LocalBackend(self), inferrer)
            self.topology = desired
            result = {"ok": True, **asdict(change)}
        except (TopologyError, MembershipError, LaunchError, RuntimeError) as exc:
            logger.error("apply failed: %s", exc)
            result = {"ok": False, "error": str(exc)}
        logger.info("apply: %s", result)
        self.dirs.apply_result.write_text(json.dumps({**result, "at": time.time()}))

    def inferrer_client(self) -> httpx.Client:
        """The launcher's own calls to the gateway (membership, the example model) as management."""
        headers = bearer_headers(self.options.tokens.get(MANAGEMENT_TOKEN_VAR))
        return httpx.Client(
            base_url=self.topology.inferrer_url, headers=headers, timeout=60, verify=verify(self.topology)
        )

    def stop(self) -> None:
        """The gateway first (no new work), then the balancer, the nodes, and monitoring."""
        self.stopping.set()
        for process in sorted(self.processes, key=lambda p: p.spec.role):
            process.stop(timeout_s=UVICORN_GRACEFUL_S + 5)
        self.dirs.launcher_pid.unlink(missing_ok=True)

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, frame: object) -> None:
            self.stopping.set()

        def request_reload(signum: int, frame: object) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGHUP, request_reload)

    def managed(self, spec: ProcessSpec) -> ManagedProcess:
        """A child whose output goes to its own log, rotated within the .env's LOG_MAX_* bounds."""
        log = RotatingLog(
            self.dirs.logs / f"{spec.name}.log", self.topology.log_max_bytes, self.topology.log_max_files
        )
        return ManagedProcess(spec, log, self.dirs.pids)

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.spec.name == name)


class _LocalBackend:
    """Membership changes on child processes of this launcher."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def prepare(self, union: Topology) -> None:
        pass

    def start_node(self, node: Node) -> None:
        if not runs_here(node):
            logger.info("%s runs on %s: start it there with `modelfleet node --index %d`", node.id,
                        node.host, node.index)  # fmt: skip
            return
        fleet = self.fleet
        spec = node_spec(fleet.topology, node, fleet.dirs, fleet.options)
        process = fleet.managed(spec)
        process.start()
        fleet.processes.append(process)

    def reload_balancer(self) -> None:
        """`nginx -t` on the new config, then SIGHUP: a graceful reload that keeps in-flight requests."""
        nginx = self.fleet.process("nginx")
        test = subprocess.run(
            [nginx.spec.argv[0], "-t", "-c", str(self.fleet.placement.nginx_conf), "-e", "stderr"],
            capture_output=True,
            text=True,
        )
        if test.returncode != 0:
            raise MembershipError(f"nginx -t refused the new config:\n{test.stderr}")
        if nginx.pid is None:
            raise MembershipError("nginx is not running")
        os.kill(nginx.pid, signal.SIGHUP)
        time.sleep(0.5)  # new workers take over; old ones finish their requests

    def stop_node(self, node: Node) -> None:
        process = next((p for p in self.fleet.processes if p.spec.name == node.id), None)
        if process is None:
            return  # another host's node, drained and out of nginx: its own host stops it
        self.fleet.processes.remove(process)
        process.stop(timeout_s=UVICORN_GRACEFUL_S + 5)

    def finish(self, final: Topology) -> None:
        pass


class _ScaledNodes:
    """The autoscaler's membership changes, on this launcher's children."""

    CHANGE_TIMEOUT_S = 60.0  # a start until ready; a removal until drained

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    @property
    def running(self) -> Topology:
        return self.fleet.topology

    def change_to(self, desired: Topology) -> None:
        fleet = self.fleet
        with fleet.inferrer_client() as inferrer:
            apply_topology(
                fleet.topology, desired, fleet.placement, _LocalBackend(fleet), inferrer,
                timeout_s=self.CHANGE_TIMEOUT_S, start_failed=self._exited, stop_when_drain_lasts=True,
            )  # fmt: skip
        fleet.topology = desired

    def _exited(self, node_id: str) -> str | None:
        process = next((p for p in self.fleet.processes if p.spec.name == node_id), None)
        if process is None or process.is_running():
            return None
        return f"its process exited with code {process.exit_code()} (see {process.log_path})"


def prepare(topology: Topology, env_file: Path, data_dir: Path, options: LaunchOptions) -> Fleet:
    dirs = DataDirs(data_dir.resolve())
    for directory in (dirs.logs, dirs.pids, dirs.run / "nginx-tmp"):
        directory.mkdir(parents=True, exist_ok=True)
    return Fleet(topology, env_file, dirs, options)


def request_apply(data_dir: Path, timeout_s: float = 180.0) -> dict[str, object]:
    """Ask the launcher running on data_dir to apply the .env, and wait for its answer."""
    dirs = DataDirs(data_dir.resolve())
    try:
        pid = int(dirs.launcher_pid.read_text())
    except (OSError, ValueError):
        raise LaunchError(f"no running `modelfleet up` uses {data_dir}") from None
    asked_at = time.time()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = json.loads(dirs.apply_result.read_text())
            if result["at"] >= asked_at:
                return dict(result)
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise LaunchError(f"the launcher did not finish applying within {timeout_s:.0f}s")
