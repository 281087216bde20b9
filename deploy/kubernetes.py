"""The fleet as Kubernetes objects, from the same topology as compose and the Swarm stack.

The nodes are a StatefulSet (a pod's name, `modelhost-0`, `modelhost-1`..., is its stable node id)
governed by the headless Service `modelhost-peers`, which lists every pod, ready or not: the gateway
finds the nodes there (INFERRER_NODES_DNS) and tells each to sync. nginx balances over the headless
Service `modelhost`, which lists the ready pods only, re-resolved every second
(deploy/docker/nginx-dns-upstreams.sh). Their building blocks are in deploy/kubernetes_pods.py;
deploy/kustomization.py writes them into a kustomize base.
"""

from __future__ import annotations

from deploy.compose import exporter_argv, serve_argv
from deploy.kubernetes_pods import (
    TOKEN_DIR,
    TOKEN_FILE,
    TOKENS_MOUNT,
    TOKENS_VOLUME,
    Object,
    container_spec,
    env_values,
    from_field,
    http_probes,
    labels,
    meta,
    pod,
    service,
)
from deploy.orchestrated import SERVERS_FILE, node_port, orchestrated_nginx
from deploy.serve_command import env_name
from deploy.topology import Topology
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.settings import InferrerSettings
from modelhost.settings import ModelhostSettings
from wire.bearer import INFERENCE_TOKEN_VAR, token_file_var

IN_FLIGHT_PER_NODE = "8"  # the HorizontalPodAutoscaler's target of gateway predictions per node


def gateway_objects(t: Topology, inference_token: bool) -> list[Object]:
    """`inference_token`: the .env sets one (the tokens Secret then holds its file too)."""
    inference = (
        {token_file_var(INFERENCE_TOKEN_VAR): f"{TOKEN_DIR}/inference_token"} if inference_token else {}
    )
    env = env_values(
        {
            env_name(InferrerSettings, "repository_dir"): "/data/repository",
            env_name(InferrerSettings, "data_dir"): "/jobs",
            env_name(InferrerSettings, "nginx_url"): f"http://nginx:{t.nginx_port}",
            env_name(InferrerSettings, "nodes_dns"): f"modelhost-peers:{node_port(t)}",
            env_name(InferrerSettings, "max_body_bytes"): str(t.max_body_bytes),
            env_name(AutoscaleSettings, "min_nodes"): str(node_bounds(t)[0]),
            env_name(AutoscaleSettings, "max_nodes"): str(node_bounds(t)[1]),
            **TOKEN_FILE,
            **inference,
        }
    )
    container = {
        **container_spec(
            "inferrer", "inferrer", serve_argv("inferrer", t.inferrer_port), t.inferrer_port, "2", "2Gi"
        ),
        "env": [*env, from_field(env_name(InferrerSettings, "gateway_id"), "metadata.name")],
        **http_probes("http", "/health/live", "/health/live"),
    }
    container["volumeMounts"] += [
        {"name": "data", "mountPath": "/data"},
        {"name": "jobs", "mountPath": "/jobs"},
        TOKENS_MOUNT,
    ]
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "jobs", "emptyDir": {}}, TOKENS_VOLUME]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("inferrer", "inferrer"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels("inferrer")},
            "template": pod(
                "inferrer", [container], volumes, t.inferrer_port, terminationGracePeriodSeconds=30
            ),
        },
    }
    return [deployment, service("inferrer", "inferrer", t.inferrer_port)]


def node_bounds(t: Topology) -> tuple[int, int]:
    """The node count's minimum and maximum: the HorizontalPodAutoscaler's and the gateway's
    autoscaler's (which exports its desired count for it)."""
    count = len(t.nodes)
    return max(count, 1), max(2 * count, count + 2)


def node_objects(t: Topology) -> list[Object]:
    port = node_port(t)
    count = len(t.nodes)
    container = {
        **container_spec("modelhost", "modelhost", serve_argv("modelhost", port), port, "1", "1Gi"),
        "env": [
            from_field(env_name(ModelhostSettings, "node_id"), "metadata.name"),  # modelhost-0, -1, ...
            *env_values(
                {
                    env_name(ModelhostSettings, "inferrer_url"): f"http://inferrer:{t.inferrer_port}",
                    env_name(ModelhostSettings, "data_dir"): "/jobs",
                    env_name(ModelhostSettings, "cache_dir"): "/var/cache/modelfleet",
                    **TOKEN_FILE,
                }
            ),
        ],
        **http_probes("http", "/health/live", "/health/ready"),
        # The pod leaves the Services' endpoints as it gets SIGTERM; nginx needs a second or two to
        # re-resolve: the node keeps serving meanwhile, then drains its requests.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    }
    container["volumeMounts"] += [
        {"name": "jobs", "mountPath": "/jobs"},
        {"name": "cache", "mountPath": "/var/cache/modelfleet"},
        TOKENS_MOUNT,
    ]
    volumes = [{"name": "jobs", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}, TOKENS_VOLUME]
    selector = {"matchLabels": labels("modelhost")}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta("modelhost", "modelhost"),
            "spec": {
                "serviceName": "modelhost-peers",
                "replicas": count,
                "podManagementPolicy": "Parallel",
                "selector": selector,
                "template": pod("modelhost", [container], volumes, port, terminationGracePeriodSeconds=30),
            },
        },
        # Every pod, ready or not: the StatefulSet's stable names, and the gateway's node list.
        service("modelhost-peers", "modelhost", port, headless=True, publishNotReadyAddresses=True),
        # The ready pods: nginx's upstream.
        service("modelhost", "modelhost", port, headless=True),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta("modelhost", "modelhost"),
            "spec": {"maxUnavailable": 1, "selector": selector},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta("modelhost", "modelhost"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "modelhost"},
                "minReplicas": node_bounds(t)[0],
                "maxReplicas": node_bounds(t)[1],
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
                    # The gateway's autoscaler's decision (the same adapter): one replica per desired
                    # node, as the value per replica is 1.
                    {
                        "type": "Object",
                        "object": {
                            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "inferrer"},
                            "metric": {"name": "modelfleet_autoscaler_desired_nodes"},
                            "target": {"type": "AverageValue", "averageValue": "1"},
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
        "metadata": meta(f"{component}-ingress", component),
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
        **container_spec("nginx", "nginx", command, t.nginx_port, "1", "256Mi"),
        **http_probes("http", "/stub_status", "/stub_status"),
    }
    nginx["volumeMounts"] += [{"name": "config", "mountPath": "/etc/modelfleet/nginx", "readOnly": True}]
    exporter_command = exporter_argv(t, "127.0.0.1")  # beside nginx, in its pod
    exporter = container_spec(
        "exporter", "prometheus", exporter_command, t.nginx_exporter_port, "250m", "64Mi"
    )
    exporter["ports"] = [{"name": "metrics", "containerPort": t.nginx_exporter_port}]
    exporter |= http_probes("metrics", "/metrics", "/metrics")
    volumes = [{"name": "config", "configMap": {"name": "nginx-conf"}}]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("nginx-conf", "nginx"),
            "data": {"nginx.conf": orchestrated_nginx(t)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("nginx", "nginx"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels("nginx")},
                "template": pod("nginx", [nginx, exporter], volumes, t.nginx_exporter_port),
            },
        },
        service("nginx", "nginx", t.nginx_port),
        _only_from("nginx", [t.nginx_port, t.nginx_exporter_port], ["inferrer", "prometheus"]),
    ]
