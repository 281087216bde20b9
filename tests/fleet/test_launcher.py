"""`modelfleet up` as a user runs it: Ctrl-C leaves nothing behind; missing tools are explained."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deploy.ephemeral_fleet import port_is_bound, start_fleet, wait_until
from deploy.example import EXAMPLE_ROW
from deploy.topology import EXAMPLE_ENV_FILE

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


def test_the_example_is_deployed_across_a_gateway_restart_without_loading_scikit_learn(
    tmp_path: Path,
) -> None:
    """The gateway killed as soon as `up` says it is ready, before the example is deployed: `up` restarts it,
    deploys the example once it answers again, and only then says the fleet is up. The example is
    trained and uploaded by a short process of its own: the long-lived launcher stays small (it held
    as much memory as a node when it trained the model itself)."""
    fleet = start_fleet(tmp_path, nodes=1, wait=False)
    try:
        # Killed once `up` has said it is ready, while the node waits for it and before the example.
        assert wait_until(lambda: "inferrer ready" in fleet.log(), timeout_s=90, interval_s=0.02)
        killed = fleet.pid("inferrer")
        os.kill(killed, signal.SIGKILL)
        assert "modelfleet is up" not in fleet.log()  # the kill came before the example's deploy
        fleet.wait_up(timeout_s=120)
        assert fleet.pid("inferrer") != killed  # restarted by the launcher
        answer = httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [EXAMPLE_ROW]})
        assert answer.status_code == 200, answer.text
        launcher = fleet.process.pid
        mapped = Path(f"/proc/{launcher}/maps").read_text()
        assert "sklearn" not in mapped and "scipy" not in mapped
        rss_kib = int(next(line for line in Path(f"/proc/{launcher}/status").read_text().splitlines()
                           if line.startswith("VmRSS:")).split()[1])  # fmt: skip
        print(f"launcher RSS with the example deployed: {rss_kib / 1024:.0f} MiB")
    finally:
        assert fleet.stop() == 0, fleet.log()
