"""A node on another host: `modelfleet node` runs it there from a copy of the gateway's .env, and
`modelfleet apply` on the gateway's host takes it into the fleet (network namespaces as hosts)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from testbed.hosts import hosts

REPOSITORY = Path(__file__).resolve().parents[2]
MODELFLEET = [sys.executable, "-m", "deploy.cli"]


def _env(gateway: str, token: str) -> str:
    return (
        f"INFERRER_HOST={gateway}\nINFERRER_PORT=8000\nNGINX_HOST={gateway}\nNGINX_PORT=8080\n"
        f"NGINX_EXPORTER_PORT=9113\nPROMETHEUS_PORT=9090\nMODELHOST_1_HOST={gateway}\nMODELHOST_1_PORT=8101\n"
        f"MODELFLEET_MANAGEMENT_TOKEN={token}\n"
    )


def test_a_node_on_another_host_joins_by_its_entry_and_apply(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(16)
    auth = f"Authorization: Bearer {token}"
    model = tmp_path / "scores.skops"
    model.write_bytes(sio.dumps(LogisticRegression().fit(np.random.default_rng(1).random((40, 4)),
                                                          np.arange(40) % 2)))  # fmt: skip
    with hosts("gateway", "node2", "client") as net:
        gateway, node2 = net.address("gateway"), net.address("node2")
        env_file = tmp_path / "fleet.env"
        env_file.write_text(_env(gateway, token))
        fleet = [*MODELFLEET, "--env-file", str(env_file), "--data-dir", str(tmp_path / "gateway-host")]
        net.start("gateway", [*fleet, "up", "--no-example", "--sync-interval", "1"], str(tmp_path / "up.log"))
        net.wait_for("client", f"http://{gateway}:8000/health/ready")
        status, body = net.curl("client", "-H", auth, "-F", "name=scores", "-F", "runtime=sklearn",
                                "-F", f"file=@{model}", f"http://{gateway}:8000/api/v1/models")  # fmt: skip
        assert status == 201, body

        # The README's steps: the node's entry in the gateway's .env, the node on its host, apply.
        topology = [*MODELFLEET, "--env-file", str(env_file)]
        added = subprocess.run([*topology, "nodes", "add", "--host", node2, "--port", "8101"],
                               capture_output=True, text=True, cwd=REPOSITORY)  # fmt: skip
        assert added.returncode == 0, added.stderr
        node_host = str(tmp_path / "node-host")
        # A copy of the .env that names the gateway by loopback would leave the node never ready.
        loopback = tmp_path / "loopback.env"
        loopback.write_text(
            env_file.read_text().replace(f"INFERRER_HOST={gateway}", "INFERRER_HOST=localhost")
        )
        refused = net.run("node2", [*MODELFLEET, "--env-file", str(loopback), "node", "--index", "2"])
        assert refused.returncode == 2, refused.stderr
        assert "INFERRER_HOST=localhost is this host's own loopback" in refused.stderr
        net.start("node2", [*topology, "--data-dir", node_host, "node", "--index", "2"],
                  str(tmp_path / "node2.log"))  # fmt: skip
        applied = net.run("gateway", [*fleet, "apply"], timeout_s=180)
        assert applied.returncode == 0, applied.stdout + applied.stderr + (tmp_path / "node2.log").read_text()

        nodes = set()
        for _ in range(30):
            status, body = net.curl("client", "-H", "content-type: application/json", "-d",
                                    '{"instances": [[0.1, 0.2, 0.3, 0.4]]}',
                                    f"http://{gateway}:8000/api/v1/models/scores/predict")  # fmt: skip
            assert status == 200, body
            nodes.add(json.loads(body)["node"])
        assert nodes == {"modelhost-1", "modelhost-2"}
        # The node binds the address of its entry, not every interface of its host.
        listening = net.run("node2", ["ss", "-Hltn", "sport = :8101"]).stdout
        assert [line.split()[3] for line in listening.splitlines()] == [f"{node2}:8101"], listening
        print(f"a node on {node2} joined the fleet of {gateway}: answers from {sorted(nodes)}")


def test_a_node_refuses_an_entry_that_is_not_an_address_of_its_host(tmp_path: Path) -> None:
    env_file = tmp_path / "fleet.env"
    env_file.write_text(_env("127.0.0.1", "t") + "MODELHOST_2_HOST=192.0.2.7\nMODELHOST_2_PORT=8101\n")
    done = subprocess.run([*MODELFLEET, "--env-file", str(env_file), "node", "--index", "2"],
                          capture_output=True, text=True, cwd=REPOSITORY, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "192.0.2.7 is not an address of this host" in done.stderr, done.stderr
    missing = subprocess.run([*MODELFLEET, "--env-file", str(env_file), "node", "--index", "5"],
                             capture_output=True, text=True, cwd=REPOSITORY, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no MODELHOST_5_HOST/_PORT entry" in missing.stderr, missing.stderr
