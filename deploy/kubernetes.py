"""The fleet as Kubernetes objects, from the same topology as compose and the Swarm stack.

The nodes are a StatefulSet (a pod's name, `modelhost-0`, `modelhost-1`..., is its stable node id)
governed by the headless Service `modelhost-peers`, which lists every pod, ready or not: the gateway
finds the nodes there (INFERRER_NODES_DNS) and tells each to sync. nginx balances over the headless
Service `modelhost`, which lists the ready pods only, re-resolved every second
(deploy/docker/nginx-dns-upstreams.sh). deploy/kustomization.py writes these into a kustomize base.
"""

from __future__ import annotations

from typing import Any

from deploy.compose import serve_argv
from deploy.serve_command import env_name
from deploy.swarm import SERVERS_FILE, node_port, orchestrated_nginx
from deploy.topology import Topology
from inferrer.settings import InferrerSettings
from modelhost.settings import ModelhostSettings
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR, token_file_var

Object = dict[str, Any]
TOKENS_SECRET = "modelfleet-tokens"
STORES_SECRET = "modelfleet-stores"
TOKEN_DIR = "/run/secrets/modelfleet"
IN_FLIGHT_PER_NODE = "8"  # the HorizontalPodAutoscaler's target of gateway predictions per node
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


def _meta(name: str, component: str, **extra: Any) -> Object:
    return {"name": name, "labels": labels(component), **extra}


def _scraped(port: int) -> dict[str, str]:
    """Prometheus scrape annotations (the bundled Prometheus and a cluster's own read them)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def _http_probes(port: str, live: str, ready: str) -> Object:
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


def _container(name: str, image: str, command: list[str], port: int, cpu: str, memory: str) -> Object:
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


def _pod(
    component: str, containers: list[Object], volumes: list[Object], port: int | None, **spec: Any
) -> Object:
    scraped = {"annotations": _scraped(port)} if port else {}
    return {
        "metadata": {"labels": labels(component), **scraped},
        "spec": {
            "securityContext": _POD_SECURITY,
            "containers": containers,
            "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
            **spec,
        },
    }


def _env(values: dict[str, str]) -> list[Object]:
    return [{"name": name, "value": value} for name, value in values.items()]


def _from_field(name: str, path: str) -> Object:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


_TOKENS_VOLUME = {"name": "tokens", "secret": {"secretName": TOKENS_SECRET, "defaultMode": 0o400}}
_TOKENS_MOUNT = {"name": "tokens", "mountPath": TOKEN_DIR, "readOnly": True}
_TOKEN_FILE = {token_file_var(MANAGEMENT_TOKEN_VAR): f"{TOKEN_DIR}/management_token"}


def token_file_environment() -> list[Object]:
    """The management token's file (the tokens Secret, mounted at TOKEN_DIR)."""
    return _env(_TOKEN_FILE)


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
    container = _container(component, image, command, port or 0, "1", "1Gi")
    if port is None:
        del container["ports"]
    if probes:
        container |= _http_probes("http", *probes)
    container["volumeMounts"] += mounts
    if any(mount["name"] == "tokens" for mount in mounts):
        volumes = [*volumes, _TOKENS_VOLUME]
    return _pod(component, [container], volumes, port, **spec)


def _service(name: str, component: str, port: int, headless: bool = False, **spec: Any) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component),
        "spec": {
            "selector": labels(component),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            **({"clusterIP": "None"} if headless else {}),
            **spec,
        },
    }


def gateway_objects(t: Topology, inference_token: bool) -> list[Object]:
    """`inference_token`: the .env sets one (the tokens Secret then holds its file too)."""
    inference = (
        {token_file_var(INFERENCE_TOKEN_VAR): f"{TOKEN_DIR}/inference_token"} if inference_token else {}
    )
    env = _env(
        {
            env_name(InferrerSettings, "repository_dir"): "/data/repository",
            env_name(InferrerSettings, "data_dir"): "/jobs",
            env_name(InferrerSettings, "nginx_url"): f"http://nginx:{t.nginx_port}",
            env_name(InferrerSettings, "nodes_dns"): f"modelhost-peers:{node_port(t)}",
            env_name(InferrerSettings, "max_body_bytes"): str(t.max_body_bytes),
            **_TOKEN_FILE,
            **inference,
        }
    )
    container = {
        **_container(
            "inferrer", "inferrer", serve_argv("inferrer", t.inferrer_port), t.inferrer_port, "2", "2Gi"
        ),
        "env": [*env, _from_field(env_name(InferrerSettings, "gateway_id"), "metadata.name")],
        **_http_probes("http", "/health/live", "/health/live"),
    }
    container["volumeMounts"] += [
        {"name": "data", "mountPath": "/data"},
        {"name": "jobs", "mountPath": "/jobs"},
        _TOKENS_MOUNT,
    ]
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "jobs", "emptyDir": {}}, _TOKENS_VOLUME]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("inferrer", "inferrer"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels("inferrer")},
            "template": _pod(
                "inferrer", [container], volumes, t.inferrer_port, terminationGracePeriodSeconds=30
            ),
        },
    }
    return [deployment, _service("inferrer", "inferrer", t.inferrer_port)]


def node_objects(t: Topology) -> list[Object]:
    port = node_port(t)
    count = len(t.nodes)
    container = {
        **_container("modelhost", "modelhost", serve_argv("modelhost", port), port, "1", "1Gi"),
        "env": [
            _from_field(env_name(ModelhostSettings, "node_id"), "metadata.name"),  # modelhost-0, -1, ...
            *_env(
                {
                    env_name(ModelhostSettings, "inferrer_url"): f"http://inferrer:{t.inferrer_port}",
                    env_name(ModelhostSettings, "data_dir"): "/jobs",
                    env_name(ModelhostSettings, "cache_dir"): "/var/cache/modelfleet",
                    **_TOKEN_FILE,
                }
            ),
        ],
        **_http_probes("http", "/health/live", "/health/ready"),
        # The pod leaves the Services' endpoints as it gets SIGTERM; nginx needs a second or two to
        # re-resolve: the node keeps serving meanwhile, then drains its requests.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    }
    container["volumeMounts"] += [
        {"name": "jobs", "mountPath": "/jobs"},
        {"name": "cache", "mountPath": "/var/cache/modelfleet"},
        _TOKENS_MOUNT,
    ]
    volumes = [{"name": "jobs", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}, _TOKENS_VOLUME]
    selector = {"matchLabels": labels("modelhost")}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("modelhost", "modelhost"),
            "spec": {
                "serviceName": "modelhost-peers",
                "replicas": count,
                "podManagementPolicy": "Parallel",
                "selector": selector,
                "template": _pod("modelhost", [container], volumes, port, terminationGracePeriodSeconds=30),
            },
        },
        # Every pod, ready or not: the StatefulSet's stable names, and the gateway's node list.
        _service("modelhost-peers", "modelhost", port, headless=True, publishNotReadyAddresses=True),
        # The ready pods: nginx's upstream.
        _service("modelhost", "modelhost", port, headless=True),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("modelhost", "modelhost"),
            "spec": {"maxUnavailable": 1, "selector": selector},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta("modelhost", "modelhost"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "modelhost"},
                "minReplicas": max(count, 1),
                "maxReplicas": max(2 * count, count + 2),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    },
                    # Predictions in flight at the gateways, per node (needs a custom metrics adapter,
                    # such as prometheus-adapter, serving the gateway's metric).
                    {
                        "type": "Object",
                        "object": {
                            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "inferrer"},
                            "metric": {"name": "modelfleet_inferrer_predictions_in_flight"},
                            "target": {"type": "AverageValue", "averageValue": IN_FLIGHT_PER_NODE},
                        },
                    },
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
        },
        _only_from("modelhost", [port], ["inferrer", "nginx", "prometheus"]),
    ]


def _only_from(component: str, ports: list[int], peers: list[str]) -> Object:
    """A NetworkPolicy: only `peers` (by component) reach `component`'s pods, on `ports`."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(f"{component}-ingress", component),
        "spec": {
            "podSelector": {"matchLabels": labels(component)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": labels(peer)}} for peer in peers],
                    "ports": [{"protocol": "TCP", "port": port} for port in ports],
                }
            ],
        },
    }


def balancer_objects(t: Topology) -> list[Object]:
    command = [
        "modelfleet-nginx-dns",
        "modelhost",
        str(node_port(t)),
        "/etc/modelfleet/nginx/nginx.conf",
        SERVERS_FILE,
    ]
    nginx = {
        **_container("nginx", "nginx", command, t.nginx_port, "1", "256Mi"),
        **_http_probes("http", "/stub_status", "/stub_status"),
    }
    nginx["volumeMounts"] += [{"name": "config", "mountPath": "/etc/modelfleet/nginx", "readOnly": True}]
    exporter_command = [
        "prometheus-nginx-exporter",
        "-nginx.scrape-uri",
        f"http://127.0.0.1:{t.nginx_port}/stub_status",
        "-web.listen-address",
        f"0.0.0.0:{t.nginx_exporter_port}",
    ]
    exporter = _container("exporter", "prometheus", exporter_command, t.nginx_exporter_port, "250m", "64Mi")
    exporter["ports"] = [{"name": "metrics", "containerPort": t.nginx_exporter_port}]
    exporter |= _http_probes("metrics", "/metrics", "/metrics")
    volumes = [{"name": "config", "configMap": {"name": "nginx-conf"}}]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("nginx-conf", "nginx"),
            "data": {"nginx.conf": orchestrated_nginx(t)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("nginx", "nginx"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels("nginx")},
                "template": _pod("nginx", [nginx, exporter], volumes, t.nginx_exporter_port),
            },
        },
        _service("nginx", "nginx", t.nginx_port),
        _only_from("nginx", [t.nginx_port, t.nginx_exporter_port], ["inferrer", "prometheus"]),
    ]
