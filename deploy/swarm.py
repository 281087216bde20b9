"""Render deploy/swarm/: a Docker Swarm stack of the fleet, from the same topology as compose.

Swarm runs the nodes as one replicated service, so `docker service scale modelfleet_modelhost=N`
adds or removes nodes and nothing else needs editing:

- each task's node id is `modelhost-<task slot>`, the only id Swarm keeps stable for a task;
- nginx's upstream is whatever `tasks.modelhost` resolves to, re-resolved every second
  (deploy/docker/nginx-dns-upstreams.sh), and the gateway finds the nodes the same way
  (INFERRER_NODES_DNS); Prometheus discovers them by DNS too;
- every service uses `endpoint_mode: dnsrr` and publishes in `mode: host`: no virtual IP and no
  routing mesh, which need IPVS in the kernel;
- the tokens are Swarm secrets, mounted as files and named by `<VAR>_FILE`, never environment values.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from deploy.autoscaling import autoscale_environment
from deploy.broker import (
    CONTAINER_PORT,
    PASSWORD_VARIABLE,
    URL_VARIABLE,
    container_command,
    container_health,
    ensure_password,
    streams_environment,
)
from deploy.compose import HEALTHCHECK, JOBS_DIR, STOP_GRACE, dump_yaml, exporter_argv, serve_argv
from deploy.orchestrated import SERVERS_FILE, node_port, orchestrated_nginx
from deploy.render import (
    MONITORING_IN_IMAGE,
    PROMETHEUS_GLOBAL,
    prometheus_flags,
    rule_files,
    write_atomic,
)
from deploy.serve_command import env_name
from deploy.tokens import SHARED_STORE_VARIABLES, service_tokens, storage_environment, tracing_environment
from deploy.topology import DEPLOY_DIR, Topology
from inferrer.settings import InferrerSettings
from modelhost.settings import ModelhostSettings
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR, token_file_var

SWARM_DIR = DEPLOY_DIR / "swarm"
NODE_SERVICE = "modelhost"
GATEWAY_STORES = Path("secrets/gateway.env")  # beside the stack: what the .env sets of the stores
NODE_STORES = Path("secrets/node.env")  # nginx's upstream servers, written in its container
_SECRETS = {
    MANAGEMENT_TOKEN_VAR: "management_token", INFERENCE_TOKEN_VAR: "inference_token",
    PASSWORD_VARIABLE: "broker_password",
}  # fmt: skip
_BROKER_PASSWORD = "$$(cat /run/secrets/broker_password)"  # read by the broker's shell
HEADER = (
    "# Rendered by `modelfleet render` from deploy/.env. Do not edit: edit the .env and render.\n"
    "# docker stack deploy -c deploy/swarm/stack.yml modelfleet   (docs/orchestrators.md)\n"
)
_RESTART = {"condition": "any", "delay": "1s", "window": "30s"}
_MANAGER = "node.role == manager"


def render_swarm_prometheus(topology: Topology) -> str:
    jobs = (
        ("inferrer", "tasks.inferrer", topology.inferrer_port),
        ("modelhost", f"tasks.{NODE_SERVICE}", node_port(topology)),
        ("nginx", "tasks.nginx-exporter", topology.nginx_exporter_port),
    )
    scrapes = "".join(
        f"  - job_name: {job}\n    dns_sd_configs:\n"
        f"      - names: [{name}]\n        type: A\n        port: {port}\n        refresh_interval: 5s\n"
        for job, name, port in jobs
    )
    return (
        HEADER + "# Targets are the tasks DNS lists: scaling a service needs no Prometheus change.\n"
        f"{PROMETHEUS_GLOBAL}\n{rule_files(MONITORING_IN_IMAGE)}\nscrape_configs:\n{scrapes}"
    )


def _published(port: int) -> list[dict[str, Any]]:
    """On the host's own port (`mode: host`): the routing mesh needs IPVS."""
    return [{"target": port, "published": port, "protocol": "tcp", "mode": "host"}]


def _secret_files(names: list[str]) -> list[dict[str, Any]]:
    # Readable by the images' user (uid 10001) only.
    return [{"source": name, "target": name, "uid": "10001", "gid": "10001", "mode": 0o400} for name in names]


def _token_environment(names: list[str]) -> dict[str, str]:
    return {token_file_var(var): f"/run/secrets/{name}" for var, name in _SECRETS.items() if name in names}


def _deploy(replicas: int, order: str, cpus: str, memory: str) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "endpoint_mode": "dnsrr",
        "update_config": {"parallelism": 1, "order": order, "delay": "1s", "failure_action": "rollback",
                          "monitor": "5s"},
        "rollback_config": {"parallelism": 1, "order": order},
        "restart_policy": _RESTART,
        "resources": {"limits": {"cpus": cpus, "memory": memory},
                      "reservations": {"cpus": "0.1", "memory": "64M"}},
    }  # fmt: skip


def _health(url: str) -> dict[str, Any]:
    return {"test": ["CMD", "curl", "-fsS", "-o", "/dev/null", url], **HEALTHCHECK}


def stack_document(topology: Topology, env_file: Path | None, configs: dict[str, str]) -> dict[str, Any]:
    """The stack; `configs`: config name -> its file's content hash (a changed file is a new config)."""
    t = topology
    shared = env_file is not None and bool(
        storage_environment(env_file).get(env_name(InferrerSettings, "repository_db_url"))
    )
    secrets = [_SECRETS[MANAGEMENT_TOKEN_VAR]]
    if env_file and INFERENCE_TOKEN_VAR in service_tokens(env_file):
        secrets.append(_SECRETS[INFERENCE_TOKEN_VAR])
    port = node_port(t)
    python_health = ["CMD", "python3", "-c", "import os, urllib.request; "
                     "urllib.request.urlopen(os.environ['HEALTH_URL'], timeout=2)"]  # fmt: skip
    gateway = {
        "image": "modelfleet-inferrer:latest",
        "command": serve_argv("inferrer", t.inferrer_port),
        "environment": {
            env_name(InferrerSettings, "repository_dir"): "/data/repository",
            env_name(InferrerSettings, "data_dir"): JOBS_DIR,
            env_name(InferrerSettings, "nginx_url"): f"http://nginx:{t.nginx_port}",
            env_name(InferrerSettings, "nodes_dns"): f"tasks.{NODE_SERVICE}:{port}",
            env_name(InferrerSettings, "max_body_bytes"): str(t.max_body_bytes),
            **_token_environment(secrets),
            "HEALTH_URL": f"http://127.0.0.1:{t.inferrer_port}/health/live",
        },
        "ports": [
            {"target": t.inferrer_port, "published": t.inferrer_port, "protocol": "tcp", "mode": "host"}
        ],
        "env_file": [f"./{GATEWAY_STORES}"],  # the stores' URLs and S3 settings (git ignores it)
        "volumes": ["models:/data", f"jobs:{JOBS_DIR}"],
        "secrets": _secret_files(secrets),
        "healthcheck": {"test": python_health, **HEALTHCHECK},
        "stop_grace_period": STOP_GRACE,
        # One gateway per host (its port is the host's); stop-first: the new task needs that port.
        # Its repository in a folder is on a host's volume: then it stays on a manager (one host).
        "deploy": {
            **_deploy(1, "stop-first", "2", "2G"),
            "placement": {
                "max_replicas_per_node": 1,
                **({} if shared else {"constraints": [_MANAGER]}),
            },
        },
    }
    node = {
        "image": "modelfleet-modelhost:latest",
        "command": serve_argv("modelhost", port),
        "hostname": f"{NODE_SERVICE}-{{{{.Task.Slot}}}}",
        "environment": {
            env_name(ModelhostSettings, "node_id"): f"{NODE_SERVICE}-{{{{.Task.Slot}}}}",
            env_name(ModelhostSettings, "inferrer_url"): f"http://inferrer:{t.inferrer_port}",
            env_name(ModelhostSettings, "data_dir"): JOBS_DIR,
            **_token_environment(secrets[:1]),
            "HEALTH_URL": f"http://127.0.0.1:{port}/health/ready",
        },
        "env_file": [f"./{NODE_STORES}"],  # the S3 settings (git ignores it)
        "volumes": [f"jobs:{JOBS_DIR}"],
        "secrets": _secret_files(secrets[:1]),
        # Healthy (and listed in DNS) once ready: synced, the active models loaded. A node not ready
        # for a minute after its first two is restarted.
        "healthcheck": {"test": python_health, **HEALTHCHECK, "start_period": "120s"},
        "stop_grace_period": STOP_GRACE,
        "deploy": _deploy(len(t.nodes), "start-first", "1", "1G"),
    }
    nginx = {
        "image": "modelfleet-nginx:latest",
        "command": [
            "modelfleet-nginx-dns",
            f"tasks.{NODE_SERVICE}",
            str(port),
            "/etc/modelfleet/nginx/nginx.conf",
            SERVERS_FILE,
        ],
        "configs": [{"source": "nginx_conf", "target": "/etc/modelfleet/nginx/nginx.conf", "mode": 0o444}],
        "healthcheck": _health(f"http://127.0.0.1:{t.nginx_port}/stub_status"),
        "stop_grace_period": STOP_GRACE,
        "deploy": _deploy(1, "start-first", "1", "256M"),
    }
    exporter = {
        "image": "modelfleet-prometheus:latest",
        "command": exporter_argv(t, "nginx"),
        "healthcheck": _health(f"http://127.0.0.1:{t.nginx_exporter_port}/metrics"),
        "deploy": _deploy(1, "start-first", "0.25", "64M"),
    }
    prometheus = {
        "image": "modelfleet-prometheus:latest",
        "command": [
            "prometheus",
            "--config.file=/etc/modelfleet/prometheus/prometheus.yml",
            *prometheus_flags(t, "/prometheus"),
            f"--web.listen-address=0.0.0.0:{t.prometheus_port}",
        ],
        "ports": [
            {"target": t.prometheus_port, "published": t.prometheus_port, "protocol": "tcp", "mode": "host"}
        ],
        "configs": [
            {"source": "prometheus_yml", "target": "/etc/modelfleet/prometheus/prometheus.yml", "mode": 0o444}
        ],
        "volumes": ["prometheus-data:/prometheus"],
        "healthcheck": _health(f"http://127.0.0.1:{t.prometheus_port}/-/ready"),
        # One Prometheus owns its data volume: the old one stops before the new one opens it.
        "deploy": _deploy(1, "stop-first", "1", "1G"),
    }
    example = {
        "image": "modelfleet-inferrer:latest",
        "command": ["python3", "-m", "deploy.example_model", "--deploy", f"http://inferrer:{t.inferrer_port}"],
        "environment": _token_environment(secrets[:1]),
        "secrets": _secret_files(secrets[:1]),
        "healthcheck": {"disable": True},
        # One shot: deploys the example once the gateway answers (it retries), then stays complete.
        "deploy": {"replicas": 1, "endpoint_mode": "dnsrr",
                   "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 10}},
    }  # fmt: skip
    services: dict[str, dict[str, Any]] = {
        "inferrer": gateway, NODE_SERVICE: node, "nginx": nginx, "nginx-exporter": exporter,
        "prometheus": prometheus, "example-model": example,
    }  # fmt: skip
    if t.broker_port is not None:  # its append-only file is on a manager's volume: one host
        secrets.append(_SECRETS[PASSWORD_VARIABLE])
        services["broker"] = {
            "image": "modelfleet-broker:latest", "command": container_command(_BROKER_PASSWORD),
            "volumes": ["broker-data:/data"], "secrets": _secret_files(secrets[-1:]),
            "healthcheck": {"test": container_health(_BROKER_PASSWORD), **HEALTHCHECK},
            "deploy": {**_deploy(1, "stop-first", "1", "1G"), "placement": {"constraints": [_MANAGER]}},
        }  # fmt: skip
    rotation = {"max-size": f"{max(1, t.log_max_bytes // 1024)}k", "max-file": str(t.log_max_files)}
    for service in services.values():
        service["logging"] = {"driver": "json-file", "options": rotation}
    return {
        "version": "3.8",
        "services": services,
        "volumes": {
            "models": {},
            "jobs": {},
            "prometheus-data": {},
            **({"broker-data": {}} if t.broker_port else {}),
        },
        "configs": {
            name: {"name": f"modelfleet-{name.replace('_', '-')}-{digest}", "file": f"./{file}"}
            for name, (file, digest) in {
                "nginx_conf": ("nginx.conf", configs["nginx.conf"]),
                "prometheus_yml": ("prometheus.yml", configs["prometheus.yml"]),
            }.items()
        },
        "secrets": {name: {"file": f"./secrets/{name}"} for name in secrets},
    }


def write_swarm(topology: Topology, env_file: Path | None, swarm_dir: Path = SWARM_DIR) -> Path:
    """The stack file, the configs it ships (nginx's, Prometheus's) and, when the .env has the
    tokens, the secrets' files (only the owner may read them; git ignores them). Returns the stack."""
    files = {
        "nginx.conf": orchestrated_nginx(topology),
        "prometheus.yml": render_swarm_prometheus(topology),
    }
    for name, text in files.items():
        write_atomic(swarm_dir / name, text)
    digests = {name: hashlib.sha256(text.encode()).hexdigest()[:10] for name, text in files.items()}
    if env_file:
        stores = storage_environment(env_file)
        private = {_SECRETS[var]: value for var, value in service_tokens(env_file).items()}
        tracing = tracing_environment(env_file)
        gateway = {
            **stores,
            **tracing,
            **autoscale_environment(env_file),
            **streams_environment(env_file, None),
        }
        if topology.broker_port is not None:
            private[_SECRETS[PASSWORD_VARIABLE]] = password = ensure_password(env_file)
            gateway[URL_VARIABLE] = f"redis://:{password}@broker:{CONTAINER_PORT}/0"
        private[GATEWAY_STORES.name] = "".join(f"{var}={value}\n" for var, value in gateway.items())
        private[NODE_STORES.name] = "".join(
            f"{v}={value}\n" for v, value in {**stores, **tracing}.items() if v not in SHARED_STORE_VARIABLES
        )
        for name, text in private.items():
            path = swarm_dir / "secrets" / name
            path.parent.mkdir(mode=0o700, exist_ok=True)
            write_atomic(path, text)
            os.chmod(path, 0o600)
    stack = swarm_dir / "stack.yml"
    write_atomic(stack, HEADER + dump_yaml(stack_document(topology, env_file, digests)))
    return stack
