"""The renderings are checked by the real tools: `nginx -t` and `promtool check config`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.render import compose_placement, local_placement, render_all
from deploy.topology import EXAMPLE_ENV_FILE, TopologyError, load_topology


def _nginx() -> str:
    found = shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin")
    assert found, "nginx is required: the README's test command installs it"
    return found


def _nginx_t(conf: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_nginx(), "-t", "-c", str(conf), "-e", str(log)], capture_output=True, text=True)


def test_local_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    placement = local_placement(topology, tmp_path / "run")
    (tmp_path / "run" / "logs").mkdir(parents=True)
    (tmp_path / "run" / "nginx-tmp").mkdir()
    render_all(topology, placement)
    text = placement.nginx_conf.read_text()
    for port in (8101, 8102, 8103):
        assert f"server 127.0.0.1:{port} " in text
    assert "least_conn;" in text and "keepalive 64;" in text
    assert "non_idempotent" in text and "client_max_body_size" in text
    result = _nginx_t(placement.nginx_conf, tmp_path / "t.log")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    nodes = json.loads(placement.nodes_json.read_text())
    assert nodes["modelhost-2"] == "http://127.0.0.1:8102"


def test_compose_nginx_config_uses_service_names(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    placement = compose_placement(topology, tmp_path / "compose")
    render_all(topology, placement)
    text = placement.nginx_conf.read_text()
    assert "server modelhost-3:8103 " in text
    assert "listen 0.0.0.0:8080;" in text
    # Service names resolve only inside the compose network; nginx -t there is in the compose test.
    assert json.loads(placement.nodes_json.read_text())["modelhost-1"] == "http://modelhost-1:8101"


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE).with_node_count(4)
    placement = local_placement(topology, tmp_path / "run")
    render_all(topology, placement)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: the README's test command installs prometheus"
    result = subprocess.run(
        [promtool, "check", "config", str(placement.prometheus_yml)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = json.loads((placement.targets_dir / "modelhost.json").read_text())
    assert [g["labels"]["node"] for g in nodes] == [f"modelhost-{i}" for i in range(1, 5)]
    assert nodes[3]["targets"] == ["127.0.0.1:8104"]


def test_prometheus_loads_the_rules_and_sends_alerts_where_the_env_says(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(EXAMPLE_ENV_FILE.read_text() + "ALERTMANAGER=127.0.0.1:9093\n")
    topology = load_topology(env)
    placement = local_placement(topology, tmp_path / "run")
    render_all(topology, placement)
    config = placement.prometheus_yml.read_text()
    assert "targets: [127.0.0.1:9093]" in config and "monitoring/rules.yml" in config
    promtool = shutil.which("promtool")
    assert promtool
    result = subprocess.run(
        [promtool, "check", "config", str(placement.prometheus_yml)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 13 rules found" in result.stdout, result.stdout
    compose = compose_placement(load_topology(EXAMPLE_ENV_FILE), tmp_path / "compose")
    render_all(load_topology(EXAMPLE_ENV_FILE), compose)
    assert "targets: [alertmanager:9093]" in compose.prometheus_yml.read_text()
    bad = tmp_path / "bad.env"
    bad.write_text(EXAMPLE_ENV_FILE.read_text() + "ALERTMANAGER=http://x/\n")
    with pytest.raises(TopologyError, match="ALERTMANAGER"):
        load_topology(bad)
