"""A real Docker engine and the fleet's images, for the compose tests.

The engine is the project's own (deploy/docker/engine.sh, on the default socket): a module that needs
it starts it when none answers and stops it again at its end, so the next module finds the machine
as it was.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "deploy" / "docker" / "engine.sh"


def engine_answers() -> bool:
    result = subprocess.run(
        ["docker", "-H", "unix:///var/run/docker.sock", "version", "--format", "{{.Server.Version}}"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return result.returncode == 0


def _engine(command: str) -> None:
    result = subprocess.run(
        ["bash", str(ENGINE_SCRIPT), command], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def docker_engine() -> Iterator[None]:
    started = not engine_answers()
    if started:
        _engine("start")
    try:
        yield
    finally:
        if started:
            _engine("stop")


@pytest.fixture(scope="module")
def images(docker_engine: None) -> None:
    """Build every image the way docs/operations.md says, without a registry."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "deploy/docker/build-images.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"images built in {time.monotonic() - started:.0f}s")
