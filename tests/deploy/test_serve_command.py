"""Each service starts one way wherever it runs, and every variable the deploy files set is a
setting the service reads (a renamed setting fails here, not silently in production)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from deploy import serve_command
from deploy.compose import compose_document
from deploy.local_specs import DataDirs, LaunchOptions, process_specs
from deploy.render import local_placement, render_nginx
from deploy.serve_command import env_name, uvicorn_command
from deploy.topology import EXAMPLE_ENV_FILE, TopologyError, load_topology
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.settings import InferrerSettings
from inferrer.streams.settings import StreamSettings
from modelhost.settings import ModelhostSettings

ROOT = Path(__file__).resolve().parents[2]
# The longest prefix first: INFERRER_AUTOSCALE_* are the autoscaler's settings, not the gateway's.
PREFIXES: dict[str, type[BaseSettings]] = {
    "INFERRER_AUTOSCALE_": AutoscaleSettings,
    "INFERRER_STREAMS_": StreamSettings,
    "INFERRER_": InferrerSettings,
    "MODELHOST_": ModelhostSettings,
}


def _is_setting(variable: str) -> bool:
    for prefix, settings in PREFIXES.items():
        if variable.startswith(prefix):
            return any(env_name(settings, field) == variable for field in settings.model_fields)
    return True  # not a service setting (tokens, HEALTH_URL)


def test_env_names_come_from_the_settings_classes() -> None:
    assert env_name(InferrerSettings, "nodes_file") == "INFERRER_NODES_FILE"
    assert env_name(ModelhostSettings, "cache_dir") == "MODELHOST_CACHE_DIR"
    assert env_name(InferrerSettings, "management_token") == "MODELFLEET_MANAGEMENT_TOKEN"
    with pytest.raises(KeyError):
        env_name(InferrerSettings, "upstream_timeout_s")  # renamed: node_sync_timeout_s


def test_local_compose_and_image_start_the_same_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    dirs = DataDirs(tmp_path)
    specs = process_specs(
        topology, dirs, local_placement(topology, dirs.run), LaunchOptions(inferrer_workers=2)
    )
    local = {spec.name: spec for spec in specs}
    assert local["inferrer"].argv == uvicorn_command("inferrer", "127.0.0.1", 8000, workers=2)
    assert {"uvloop", "httptools"} <= set(local["modelhost-1"].argv)
    for spec in specs:
        assert all(_is_setting(variable) for variable in spec.env), spec.env

    services = compose_document(topology)["services"]
    for name in ("inferrer", "modelhost-1"):
        command = services[name]["command"]
        assert command[:3] == ["python3", "-m", "deploy.serve_command"], command
        assert all(_is_setting(variable) for variable in services[name]["environment"])
    dockerfile = (ROOT / "deploy" / "docker" / "app.Dockerfile").read_text()
    commands = re.findall(r"^CMD (.*)$", dockerfile, flags=re.MULTILINE)
    assert commands and all('"-m", "deploy.serve_command"' in command for command in commands)

    executed: list[list[str]] = []
    monkeypatch.setattr(serve_command.os, "execv", lambda path, argv: executed.append(argv))
    serve_command.main(["modelhost", "--port", "8102"])
    assert executed == [uvicorn_command("modelhost", "0.0.0.0", 8102)]


def test_nginx_and_the_inferrer_share_one_body_limit(tmp_path: Path) -> None:
    env = EXAMPLE_ENV_FILE.read_text() + "MAX_BODY_BYTES=1048576\n"
    (tmp_path / ".env").write_text(env)
    topology = load_topology(tmp_path / ".env")
    dirs = DataDirs(tmp_path)
    specs = process_specs(topology, dirs, local_placement(topology, dirs.run), LaunchOptions())
    nginx = render_nginx(topology, topology.nodes, local_placement(topology, dirs.run))
    assert "client_max_body_size 1048576;" in nginx
    inferrer = next(spec for spec in specs if spec.name == "inferrer")
    assert inferrer.env["INFERRER_MAX_BODY_BYTES"] == "1048576"
    services = compose_document(topology)["services"]
    assert services["inferrer"]["environment"]["INFERRER_MAX_BODY_BYTES"] == "1048576"


def test_logs_and_prometheus_storage_are_bounded_by_the_env(tmp_path: Path) -> None:
    settings = "LOG_MAX_BYTES=2097152\nLOG_MAX_FILES=5\n"
    settings += "PROMETHEUS_RETENTION_TIME=2d\nPROMETHEUS_RETENTION_SIZE=300MB\n"
    (tmp_path / ".env").write_text(EXAMPLE_ENV_FILE.read_text() + settings)
    topology = load_topology(tmp_path / ".env")
    services = compose_document(topology)["services"]
    for name, service in services.items():
        assert service["logging"] == {
            "driver": "json-file",
            "options": {"max-size": "2048k", "max-file": "5"},
        }, name
    bounds = ["--storage.tsdb.retention.time=2d", "--storage.tsdb.retention.size=300MB"]
    assert set(bounds) <= set(services["prometheus"]["command"])
    dirs = DataDirs(tmp_path)
    specs = process_specs(topology, dirs, local_placement(topology, dirs.run), LaunchOptions())
    local = next((spec for spec in specs if spec.name == "prometheus"), None)
    assert local is None or set(bounds) <= set(local.argv)  # None: prometheus not installed here
    (tmp_path / ".env").write_text(EXAMPLE_ENV_FILE.read_text() + "PROMETHEUS_RETENTION_TIME=forever\n")
    with pytest.raises(TopologyError, match="PROMETHEUS_RETENTION_TIME"):
        load_topology(tmp_path / ".env")


@pytest.mark.parametrize("service", ["inferrer", "modelhost"])
def test_a_service_starts_without_the_model_libraries(service: str, tmp_path: Path) -> None:
    """scikit-learn and skops cost 2 s of CPU at import: a process loads them at its first model
    (a deploy's inspection, a node's load), so a gateway or node is ready that much sooner."""
    factory = serve_command.APPS[service].replace(":", " import ")
    script = (
        f"import sys\nfrom {factory}\ncreate_app()\n"
        "print(sorted(m for m in ('sklearn', 'skops', 'joblib', 'onnxruntime') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "INFERRER_REPOSITORY_DIR": str(tmp_path / "repo"),
        "MODELHOST_DATA_DIR": str(tmp_path),
    }
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout
