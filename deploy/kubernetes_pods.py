"""Kubernetes building blocks of the fleet's objects: labels, a container, a pod, a Service, the
tokens Secret's volume. Every pod runs as the images' user (uid 10001), non-root, on a read-only
root filesystem with a writable /tmp, no capabilities and the runtime's seccomp profile; every
container has requests below its limits, and is annotated for Prometheus when it serves metrics."""

from __future__ import annotations

from typing import Any

from wire.bearer import MANAGEMENT_TOKEN_VAR, token_file_var

Object = dict[str, Any]
TOKENS_SECRET = "modelfleet-tokens"
STORES_SECRET = "modelfleet-stores"
TOKEN_DIR = "/run/secrets/modelfleet"
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelfleet", "app.kubernetes.io/component": component}


def meta(name: str, component: str, **extra: Any) -> Object:
    return {"name": name, "labels": labels(component), **extra}


def scraped(port: int) -> dict[str, str]:
    """Prometheus scrape annotations (the bundled Prometheus and a cluster's own read them)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def http_probes(port: str, live: str, ready: str) -> Object:
    return {
        "livenessProbe": {
            "httpGet": {"path": live, "port": port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": ready, "port": port},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "startupProbe": {"httpGet": {"path": live, "port": port}, "periodSeconds": 2, "failureThreshold": 60},
    }


def container_spec(name: str, image: str, command: list[str], port: int, cpu: str, memory: str) -> Object:
    return {
        "name": name,
        "image": f"modelfleet-{image}:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "ports": [{"name": "http", "containerPort": port}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},  # below every limit
            "limits": {"cpu": cpu, "memory": memory},
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod(
    component: str, containers: list[Object], volumes: list[Object], port: int | None, **spec: Any
) -> Object:
    annotations = {"annotations": scraped(port)} if port else {}
    return {
        "metadata": {"labels": labels(component), **annotations},
        "spec": {
            "securityContext": _POD_SECURITY,
            "containers": containers,
            "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
            **spec,
        },
    }


def env_values(values: dict[str, str]) -> list[Object]:
    return [{"name": name, "value": value} for name, value in values.items()]


def from_field(name: str, path: str) -> Object:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


TOKENS_VOLUME = {"name": "tokens", "secret": {"secretName": TOKENS_SECRET, "defaultMode": 0o400}}
TOKENS_MOUNT = {"name": "tokens", "mountPath": TOKEN_DIR, "readOnly": True}
TOKEN_FILE = {token_file_var(MANAGEMENT_TOKEN_VAR): f"{TOKEN_DIR}/management_token"}


def token_file_environment() -> list[Object]:
    """The management token's file (the tokens Secret, mounted at TOKEN_DIR)."""
    return env_values(TOKEN_FILE)


def pod_template(
    component: str,
    image: str,
    command: list[str],
    port: int | None,
    probes: tuple[str, str] | None,
    mounts: list[Object],
    volumes: list[Object],
    **spec: Any,
) -> Object:
    """A pod of one container: `probes` are its (liveness, readiness) paths on `port`; a mount named
    `tokens` brings the tokens Secret's volume."""
    container = container_spec(component, image, command, port or 0, "1", "1Gi")
    if port is None:
        del container["ports"]
    if probes:
        container |= http_probes("http", *probes)
    container["volumeMounts"] += mounts
    if any(mount["name"] == "tokens" for mount in mounts):
        volumes = [*volumes, TOKENS_VOLUME]
    return pod(component, [container], volumes, port, **spec)


def service(name: str, component: str, port: int, headless: bool = False, **spec: Any) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, component),
        "spec": {
            "selector": labels(component),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            **({"clusterIP": "None"} if headless else {}),
            **spec,
        },
    }
