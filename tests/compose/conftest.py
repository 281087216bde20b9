"""A real Docker engine and the fleet's images, for the compose tests.

Uses the engine at $DOCKER_HOST when one answers; otherwise starts a private dockerd on its own
socket and stops it by its PID at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_SOCKET = "/run/modelfleet-test-docker.sock"


def _engine_answers(host: str) -> bool:
    result = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env={**os.environ, "DOCKER_HOST": host}, capture_output=True, timeout=30,
    )  # fmt: skip
    return result.returncode == 0


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("DOCKER_HOST")
    if existing and _engine_answers(existing):
        yield existing
        return
    host = f"unix://{PRIVATE_SOCKET}"
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [
                "dockerd", "--host", host, "--data-root", "/var/lib/modelfleet-test-docker",
                "--exec-root", "/run/modelfleet-test-docker", "--pidfile", "/run/modelfleet-test-docker.pid",
            ],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _engine_answers(host):
        assert daemon.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "dockerd did not start in 60 s"
        time.sleep(0.5)
    os.environ["DOCKER_HOST"] = host
    try:
        yield host
    finally:
        del os.environ["DOCKER_HOST"]
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture(scope="session")
def images(docker_host: str) -> None:
    """Build every image the way the README says, without a registry."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "deploy/docker/build-images.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"images built in {time.monotonic() - started:.0f}s")
