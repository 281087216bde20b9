"""`modelfleet up` as a user runs it: Ctrl-C leaves nothing behind; missing tools are explained."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.topology import EXAMPLE_ENV_FILE
from tests.harness import port_is_bound, start_fleet

pytestmark = pytest.mark.fleet


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but still listed until reaped; only our own children could be zombies here.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_ctrl_c_stops_every_child_and_frees_every_port(tmp_path: Path) -> None:
    fleet = start_fleet(tmp_path, nodes=2, extra_args=("--no-example",))
    children = fleet.child_pids()
    assert len(children) >= 4  # inferrer, 2 nodes, nginx (+ exporter, prometheus)
    assert all(_alive(pid) for pid in children)

    assert fleet.stop() == 0, fleet.log()

    assert [pid for pid in children if _alive(pid)] == []
    assert [port for port in fleet.all_ports() if port_is_bound(port)] == []
    assert "stopped." in fleet.log()


def test_missing_nginx_is_a_clear_error(tmp_path: Path) -> None:
    env_file = tmp_path / "fleet.env"
    shutil.copyfile(EXAMPLE_ENV_FILE, env_file)
    result = subprocess.run(
        [
            sys.executable, "-m", "deploy.cli", "--env-file", str(env_file),
            "--data-dir", str(tmp_path / "data"), "up", "--nginx-bin", "nginx-not-installed",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "nginx is not installed" in result.stderr
    assert "apt-get install" in result.stderr
