"""Render deploy/docker-compose.yml and the configs it mounts, from the same topology."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from datafiles.locations import S3_VARIABLES
from deploy.broker import CONTAINER_PORT as BROKER_PORT
from deploy.broker import PASSWORD_VARIABLE, URL_VARIABLE, container_command, container_health
from deploy.render import (
    ALERTMANAGER_PORT,
    MONITORING_IN_IMAGE,
    compose_placement,
    prometheus_flags,
    render_all,
    write_atomic,
)
from deploy.serve_command import UVICORN_GRACEFUL_S, env_name
from deploy.tokens import SHARED_STORE_VARIABLES
from deploy.topology import DEPLOY_DIR, Node, Topology
from inferrer.scaling.settings import AUTOSCALE_VARIABLES
from inferrer.settings import InferrerSettings
from inferrer.streams.settings import STREAM_VARIABLES
from modelhost.settings import ModelhostSettings
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR
from wire.tracing_settings import TRACING_VARIABLES

COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
COMPOSE_DIR = DEPLOY_DIR / "compose"
HEADER = "# Rendered by `modelfleet render` from deploy/.env. Do not edit: edit the .env and render.\n"

# Above uvicorn's --timeout-graceful-shutdown, so a stopping container finishes its requests.
STOP_GRACE = f"{UVICORN_GRACEFUL_S + 10}s"
HEALTHCHECK = {"interval": "2s", "timeout": "2s", "retries": 30, "start_period": "5s"}


def serve_argv(service: str, port: int) -> list[str]:
    """The images' own start command (deploy/serve_command.py) on this port."""
    return ["python3", "-m", "deploy.serve_command", service, "--port", str(port)]


# docker-compose reads the tokens from the .env next to the compose file (deploy/.env).
_REQUIRED_TOKEN = f"${{{MANAGEMENT_TOKEN_VAR}:?run modelfleet render to generate it}}"


# The S3 store of s3:// locations, and the gateway's shared stores, from the .env when set there.
_S3_FROM_ENV = {var: f"${{{var}:-}}" for var in S3_VARIABLES}
_TRACING_FROM_ENV = {var: f"${{{var}:-}}" for var in TRACING_VARIABLES}  # gateway and nodes
_STORES_FROM_ENV = {var: f"${{{var}:-}}" for var in SHARED_STORE_VARIABLES}
_AUTOSCALE_FROM_ENV = {var: f"${{{var}:-}}" for var in AUTOSCALE_VARIABLES}
_STREAMS_FROM_ENV = {var: f"${{{var}:-}}" for var in STREAM_VARIABLES}
# The broker's password: in the .env (rendering generates it), given to the broker's shell by
# environment, and in the gateway's URL of the broker service.
_BROKER_PASSWORD = f"${{{PASSWORD_VARIABLE}:?run modelfleet render to generate it}}"
_PASSWORD_IN_SHELL = f"$${{{PASSWORD_VARIABLE}}}"
JOBS_DIR = "/jobs"  # the data directory of batch jobs in the containers (a volume they all share)


def exporter_argv(topology: Topology, nginx_host: str) -> list[str]:
    """prometheus-nginx-exporter in a container, scraping the nginx at `nginx_host`."""
    return [
        "prometheus-nginx-exporter",
        "-nginx.scrape-uri",
        f"http://{nginx_host}:{topology.nginx_port}/stub_status",
        "-web.listen-address",
        f"0.0.0.0:{topology.nginx_exporter_port}",
    ]


def _image(name: str, dockerfile: str, target: str | None = None) -> dict[str, Any]:
    build: dict[str, Any] = {"context": "..", "dockerfile": f"deploy/docker/{dockerfile}"}
    if target:
        build["target"] = target
    return {"image": f"modelfleet-{name}:latest", "build": build}


def _inferrer_url(topology: Topology) -> str:
    """The inferrer as the other containers reach it, by service name."""
    return f"http://inferrer:{topology.inferrer_port}"


def node_service(topology: Topology, node: Node) -> dict[str, Any]:
    return {
        **_image("modelhost", "app.Dockerfile", "modelhost"),
        "command": serve_argv("modelhost", node.port),
        "environment": {
            env_name(ModelhostSettings, "node_id"): node.id,
            env_name(ModelhostSettings, "inferrer_url"): _inferrer_url(topology),
            env_name(ModelhostSettings, "data_dir"): JOBS_DIR,
            **_S3_FROM_ENV,
            **_TRACING_FROM_ENV,
            MANAGEMENT_TOKEN_VAR: _REQUIRED_TOKEN,
            "HEALTH_URL": f"http://127.0.0.1:{node.port}/health/ready",
        },
        "volumes": [f"jobs:{JOBS_DIR}"],  # batch jobs' files, shared with the inferrer
        "depends_on": {"inferrer": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
        "stop_grace_period": STOP_GRACE,
        "healthcheck": HEALTHCHECK,
    }


def compose_document(topology: Topology) -> dict[str, Any]:
    t = topology
    services: dict[str, Any] = {
        "inferrer": {
            **_image("inferrer", "app.Dockerfile", "inferrer"),
            "command": serve_argv("inferrer", t.inferrer_port),
            "environment": {
                env_name(InferrerSettings, "repository_dir"): "/data/repository",
                env_name(InferrerSettings, "data_dir"): JOBS_DIR,
                **_S3_FROM_ENV,
                **_TRACING_FROM_ENV,
                **_STORES_FROM_ENV,
                **_AUTOSCALE_FROM_ENV,
                **_streams_environment(t),
                env_name(InferrerSettings, "nginx_url"): f"http://nginx:{t.nginx_port}",
                env_name(InferrerSettings, "nodes_file"): "/etc/modelfleet/inferrer/nodes.json",
                env_name(InferrerSettings, "max_body_bytes"): str(t.max_body_bytes),
                MANAGEMENT_TOKEN_VAR: _REQUIRED_TOKEN,
                INFERENCE_TOKEN_VAR: f"${{{INFERENCE_TOKEN_VAR}:-}}",
                "HEALTH_URL": f"http://127.0.0.1:{t.inferrer_port}/health/live",
            },
            "ports": [f"127.0.0.1:{t.inferrer_port}:{t.inferrer_port}"],
            "volumes": ["models:/data", f"jobs:{JOBS_DIR}", "./compose/inferrer:/etc/modelfleet/inferrer:ro"],
            "restart": "unless-stopped",
            "stop_grace_period": STOP_GRACE,
            "healthcheck": HEALTHCHECK,
        }
    }
    for node in t.nodes:
        services[node.id] = node_service(t, node)
    if t.broker_port is not None:
        services["broker"] = {
            **_image("broker", "broker.Dockerfile"),
            "command": container_command(_PASSWORD_IN_SHELL),
            "environment": {PASSWORD_VARIABLE: _BROKER_PASSWORD},
            "ports": [f"127.0.0.1:{t.broker_port}:{BROKER_PORT}"],
            "volumes": ["broker-data:/data"],
            "restart": "unless-stopped",
            "healthcheck": {**HEALTHCHECK, "test": container_health(_PASSWORD_IN_SHELL)},
        }
    services["nginx"] = {
        **_image("nginx", "nginx.Dockerfile"),
        "volumes": ["./compose/nginx:/etc/modelfleet/nginx:ro"],
        "depends_on": {node.id: {"condition": "service_healthy"} for node in t.nodes},
        "restart": "unless-stopped",
        "stop_grace_period": STOP_GRACE,
        "healthcheck": {**HEALTHCHECK, "test": _curl(f"http://127.0.0.1:{t.nginx_port}/stub_status")},
    }
    # One shot: the example model `modelfleet up` deploys too, once every node is ready; it
    # changes nothing when the repository has it already (after `down` and `up`).
    services["example-model"] = {
        **_image("inferrer", "app.Dockerfile", "inferrer"),
        "command": ["python3", "-m", "deploy.example_model", "--deploy", _inferrer_url(t)],
        "environment": {MANAGEMENT_TOKEN_VAR: _REQUIRED_TOKEN},
        "depends_on": {"nginx": {"condition": "service_healthy"}},
        "restart": "no",
        "healthcheck": {"disable": True},
    }
    services["nginx-exporter"] = {
        **_image("prometheus", "prometheus.Dockerfile"),
        "command": exporter_argv(t, "nginx"),
        "depends_on": {"nginx": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
        "healthcheck": {**HEALTHCHECK, "test": _curl(f"http://127.0.0.1:{t.nginx_exporter_port}/metrics")},
    }
    services["alertmanager"] = {
        **_image("prometheus", "prometheus.Dockerfile"),
        "command": [
            "prometheus-alertmanager", f"--config.file={MONITORING_IN_IMAGE}/alertmanager.yml",
            "--storage.path=/alertmanager", f"--web.listen-address=0.0.0.0:{ALERTMANAGER_PORT}",
            "--cluster.listen-address=",  # one Alertmanager: no gossip port
        ],
        "ports": [f"127.0.0.1:{ALERTMANAGER_PORT}:{ALERTMANAGER_PORT}"],
        "volumes": ["alertmanager-data:/alertmanager"],  # its config is the image's (monitoring/)
        "restart": "unless-stopped",
        "healthcheck": {**HEALTHCHECK, "test": _curl(f"http://127.0.0.1:{ALERTMANAGER_PORT}/-/ready")},
    }  # fmt: skip
    services["prometheus"] = {
        **_image("prometheus", "prometheus.Dockerfile"),
        "command": [
            "prometheus",
            "--config.file=/etc/modelfleet/prometheus/prometheus.yml",
            *prometheus_flags(t, "/prometheus"),
            f"--web.listen-address=0.0.0.0:{t.prometheus_port}",
        ],
        "ports": [f"127.0.0.1:{t.prometheus_port}:{t.prometheus_port}"],
        "volumes": [
            "./compose/prometheus:/etc/modelfleet/prometheus:ro",  # the rules and consoles: the image's
            "prometheus-data:/prometheus",
        ],
        # Started last, so that `up -d` returns once the fleet serves the example model.
        "depends_on": {
            "inferrer": {"condition": "service_healthy"},
            "example-model": {"condition": "service_completed_successfully"},
        },
        "restart": "unless-stopped",
        "healthcheck": {**HEALTHCHECK, "test": _curl(f"http://127.0.0.1:{t.prometheus_port}/-/ready")},
    }
    # Every container's log rotates by size, a bounded number of files kept (docker's json-file).
    rotation = {"max-size": f"{max(1, t.log_max_bytes // 1024)}k", "max-file": str(t.log_max_files)}
    for service in services.values():
        service["logging"] = {"driver": "json-file", "options": rotation}
    return {
        "services": services,
        "volumes": {
            "models": {}, "jobs": {}, "prometheus-data": {}, "alertmanager-data": {},
            **({"broker-data": {}} if t.broker_port else {}),
        },
    }  # fmt: skip


def _streams_environment(topology: Topology) -> dict[str, str]:
    """The gateway's INFERRER_STREAMS_* from the .env; the broker service's URL when it runs one."""
    if topology.broker_port is None:
        return _STREAMS_FROM_ENV
    return {**_STREAMS_FROM_ENV, URL_VARIABLE: f"redis://:{_BROKER_PASSWORD}@broker:{BROKER_PORT}/0"}


def _curl(url: str) -> list[str]:
    return ["CMD", "curl", "-fsS", "-o", "/dev/null", url]


class _PlainDumper(yaml.SafeDumper):
    """For people to read: mappings as blocks, lists on one line, no &anchors/*aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _flow_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_PlainDumper.add_representer(list, _flow_list)


def dump_yaml(document: dict[str, Any]) -> str:
    """A rendered file for people to read (compose, the Swarm stack)."""
    return yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=100)


def render_compose_text(topology: Topology) -> str:
    return HEADER + dump_yaml(compose_document(topology))


def write_compose(topology: Topology, compose_file: Path = COMPOSE_FILE) -> None:
    """The compose file and the configs it mounts (nginx, Prometheus, the inferrer's node list)."""
    render_all(topology, compose_placement(topology, compose_file.parent / "compose"))
    write_atomic(compose_file, render_compose_text(topology))


def load_compose_topology(topology: Topology, compose_file: Path = COMPOSE_FILE) -> Topology:
    """The nodes the compose file runs now (hosts as in the .env: compose uses service names)."""
    services = yaml.safe_load(compose_file.read_text())["services"]
    hosts = {node.index: node.host for node in topology.nodes}
    nodes = []
    for name, service in services.items():
        match = re.fullmatch(r"modelhost-(\d+)", name)
        if match:
            index = int(match[1])
            command = service["command"]
            port = int(command[command.index("--port") + 1])
            nodes.append(Node(index, hosts.get(index, "127.0.0.1"), port))
    return replace(topology, nodes=tuple(sorted(nodes, key=lambda n: n.index)))
