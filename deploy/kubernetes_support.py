"""The services around the fleet on Kubernetes: Prometheus, which finds the pods through the API
(a Role to list them in its namespace) and scrapes those annotated for it, and the Job that deploys
the example model once a node is ready."""

from __future__ import annotations

from deploy.kubernetes_pods import TOKEN_DIR, Object, labels, meta, pod_template, token_file_environment
from deploy.render import PROMETHEUS_GLOBAL, prometheus_flags
from deploy.topology import Topology

_PROMETHEUS_CONFIG = (
    PROMETHEUS_GLOBAL
    + """rule_files:
  - /etc/modelfleet/monitoring/rules.yml  # in the Prometheus image
scrape_configs:
  # Every pod of this namespace annotated prometheus.io/scrape: "true", on its prometheus.io/port.
  - job_name: modelfleet
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          own_namespace: true
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: '([^:]+)(?::\\d+)?;(\\d+)'
        replacement: '$1:$2'
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
        target_label: job
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"""
)


def prometheus_objects(t: Topology) -> list[Object]:
    """Prometheus, finding the pods through the API (a Role to list them in this namespace)."""
    command = [
        "prometheus",
        "--config.file=/etc/modelfleet/prometheus/prometheus.yml",
        *prometheus_flags(t, "/prometheus"),
        f"--web.listen-address=0.0.0.0:{t.prometheus_port}",
    ]
    mounts: list[Object] = [
        {"name": "config", "mountPath": "/etc/modelfleet/prometheus", "readOnly": True},
        {"name": "data", "mountPath": "/prometheus"},
    ]
    volumes: list[Object] = [
        {"name": "config", "configMap": {"name": "prometheus-config"}},
        {"name": "data", "emptyDir": {}},
    ]
    template = pod_template(
        "prometheus",
        "prometheus",
        command,
        t.prometheus_port,
        ("/-/healthy", "/-/ready"),
        mounts,
        volumes,
        serviceAccountName="prometheus",
    )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("prometheus", "prometheus")},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta("prometheus", "prometheus"),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta("prometheus", "prometheus"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus"},
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("prometheus-config", "prometheus"),
            "data": {"prometheus.yml": _PROMETHEUS_CONFIG},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("prometheus", "prometheus"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels("prometheus")},
                "template": template,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("prometheus", "prometheus"),
            "spec": {
                "selector": labels("prometheus"),
                "ports": [{"name": "http", "port": t.prometheus_port, "targetPort": "http"}],
            },
        },
    ]


def example_job(t: Topology) -> Object:
    """Deploys the example model once a node is ready (it retries; nothing when it is there)."""
    command = ["python3", "-m", "deploy.example_model", "--deploy", f"http://inferrer:{t.inferrer_port}"]
    template = pod_template(
        "example-model",
        "inferrer",
        command,
        None,
        None,
        [{"name": "tokens", "mountPath": TOKEN_DIR, "readOnly": True}],
        [],
        restartPolicy="OnFailure",
    )
    template["spec"]["containers"][0]["env"] = token_file_environment()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta("example-model", "example-model"),
        # Deleted 5 minutes after it finished: a Job's pod template cannot change, and a new token
        # renames the Secret it mounts; the next `kubectl apply -k` creates it again (a no-op run).
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 300, "template": template},
    }
