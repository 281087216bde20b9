"""A whole fleet (`modelfleet up`) as a child process on free loopback ports, stopped by its PID:
what the fleet tests and the benchmarks start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values

from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers
from wire.job_answers import UNFINISHED

ENV_TEMPLATE = """\
INFERRER_HOST=127.0.0.1
INFERRER_PORT={inferrer}
NGINX_HOST=127.0.0.1
NGINX_PORT={nginx}
NGINX_EXPORTER_PORT={exporter}
PROMETHEUS_PORT={prometheus}
"""


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def port_is_bound(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RunningFleet:
    process: subprocess.Popen[bytes]
    env_file: Path
    data_dir: Path
    output: Path
    ports: dict[str, int]
    node_ports: list[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inferrer']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def token(self) -> str:
        """The management token `modelfleet up` generated into this fleet's .env."""
        token = dotenv_values(self.env_file).get(MANAGEMENT_TOKEN_VAR)
        assert token, f"no {MANAGEMENT_TOKEN_VAR} in {self.env_file}"
        return token

    @property
    def auth(self) -> dict[str, str]:
        return bearer_headers(self.token)

    def deploy(self, name: str, data: bytes, timeout_s: float = 60, **fields: str) -> httpx.Response:
        """Upload a .skops model as `name` with the management token; `fields`: version, activate..."""
        return httpx.post(
            f"{self.url}/api/v1/models",
            headers=self.auth,
            data={"name": name, **fields},
            files={"file": (f"{name}.skops", data)},
            timeout=timeout_s,
        )

    def job_view(self, job_id: str) -> dict[str, Any]:
        """`GET /api/v1/jobs/{id}`: a job's status, counts and errors."""
        view: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/jobs/{job_id}", headers=self.auth, timeout=10
        ).json()
        return view

    def finished_job(self, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
        """A job's view once it is no longer queued or running; through a restarting gateway."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                view = self.job_view(job_id)
                if view["status"] not in UNFINISHED:
                    return view
            except httpx.HTTPError:
                pass  # the gateway is restarting
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish in {timeout_s}s:\n{self.log()[-3000:]}")

    def is_ready(self) -> bool:
        """The gateway answers `/health/ready` with 200 (False while it is down or restarting)."""
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def node_view(self, node: str) -> dict[str, Any]:
        """The inferrer's view of one node (`GET /api/v1/nodes`): live, ready, models..."""
        nodes = httpx.get(f"{self.url}/api/v1/nodes", headers=self.auth, timeout=5).json()["nodes"]
        view: dict[str, Any] = next(n for n in nodes if n["id"] == node)
        return view

    def serves(self, node: str, model: str) -> bool:
        """The node is ready and has `model` loaded."""
        view = self.node_view(node)
        return bool(view["ready"]) and any(m["name"] == model for m in view["models"])

    def all_ports(self) -> list[int]:
        return [*self.ports.values(), *self.node_ports]

    def pid(self, name: str) -> int:
        return int((self.data_dir / "run" / "pids" / f"{name}.pid").read_text())

    def child_pids(self) -> list[int]:
        return [int(p.read_text()) for p in (self.data_dir / "run" / "pids").glob("*.pid")]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `modelfleet` against this fleet's .env and data dir."""
        return subprocess.run(
            [sys.executable, "-m", "deploy.cli", "--env-file", str(self.env_file),
             "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_up(self, timeout_s: float) -> None:
        """Until `modelfleet up` says the fleet is up; stopped, and RuntimeError, when it does not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"modelfleet up exited with {self.process.returncode}:\n{self.log()}")
            if "modelfleet is up" in self.log():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"modelfleet up was not up within {timeout_s}s:\n{self.log()}")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_fleet(
    tmp_path: Path,
    nodes: int = 3,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 90,
    env: dict[str, str] | None = None,
    env_lines: str = "",
    wait: bool = True,
) -> RunningFleet:
    """`modelfleet up` on free ports; `env` reaches every service (e.g. MODELHOST_* settings);
    `env_lines` go into the fleet's .env (e.g. an inference token); `wait`: until it is up."""
    inferrer, nginx, exporter, prometheus, *node_ports = free_ports(4 + nodes)
    env_file = tmp_path / "fleet.env"
    text = ENV_TEMPLATE.format(inferrer=inferrer, nginx=nginx, exporter=exporter, prometheus=prometheus)
    for i, port in enumerate(node_ports, start=1):
        text += f"MODELHOST_{i}_HOST=127.0.0.1\nMODELHOST_{i}_PORT={port}\n"
    env_file.write_text(text + env_lines)
    data_dir = tmp_path / "data"
    output = tmp_path / "modelfleet-up.log"
    argv = [
        sys.executable, "-m", "deploy.cli", "--env-file", str(env_file),
        "--data-dir", str(data_dir), "up", "--sync-interval", "1", *extra_args,
    ]  # fmt: skip
    with output.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    fleet = RunningFleet(
        process,
        env_file,
        data_dir,
        output,
        {"inferrer": inferrer, "nginx": nginx, "exporter": exporter, "prometheus": prometheus},
        node_ports,
    )
    if wait:
        fleet.wait_up(timeout_s)
    return fleet


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
