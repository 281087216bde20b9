"""The renderings are checked by the real tools: `nginx -t` and `promtool check config`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from deploy.render import render_all
from deploy.topology import EXAMPLE_ENV_FILE, load_topology


def _nginx() -> str:
    found = shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin")
    assert found, "nginx is required: the README's test command installs it"
    return found


def test_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    paths = render_all(load_topology(EXAMPLE_ENV_FILE), tmp_path / "run")
    text = paths.nginx_conf.read_text()
    for port in (8101, 8102, 8103):
        assert f"server 127.0.0.1:{port} " in text
    assert "least_conn;" in text and "keepalive 64;" in text
    assert "non_idempotent" in text and "client_max_body_size" in text
    result = subprocess.run(
        [_nginx(), "-t", "-c", str(paths.nginx_conf), "-e", str(paths.logs_dir / "t.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_rendered_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE).with_node_count(4)
    paths = render_all(topology, tmp_path / "run")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: the README's test command installs prometheus"
    result = subprocess.run(
        [promtool, "check", "config", str(paths.prometheus_yml)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = json.loads((paths.targets_dir / "modelhost.json").read_text())
    assert [g["labels"]["node"] for g in nodes] == [f"modelhost-{i}" for i in range(1, 5)]
    assert nodes[3]["targets"] == ["127.0.0.1:8104"]
