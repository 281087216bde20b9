"""Render deploy/kubernetes/: a kustomize base of the fleet and two overlays, from the topology.

    base/                    the gateway, the nodes (StatefulSet), nginx, Prometheus, the example's Job
    overlays/one-machine/    the repository and the jobs' files on volumes (one gateway)
    overlays/shared-stores/  the stores every gateway shares (deploy/.env's URLs as a Secret), two gateways

`modelfleet render --kubernetes` writes it; `kubectl apply -k deploy/kubernetes/overlays/one-machine`
applies it. The tokens (and the stores' URLs) are kustomize-generated Secrets, from files that
render writes beside the kustomizations from deploy/.env and git ignores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from datafiles.locations import S3_VARIABLES
from deploy.kubernetes import balancer_objects, gateway_objects, node_objects
from deploy.kubernetes_pods import STORES_SECRET, TOKENS_SECRET, Object, meta
from deploy.kubernetes_support import example_job, prometheus_objects
from deploy.render import write_atomic
from deploy.serve_command import env_name
from deploy.tokens import service_tokens, storage_environment
from deploy.topology import DEPLOY_DIR, Topology
from inferrer.settings import InferrerSettings
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR

KUBERNETES_DIR = DEPLOY_DIR / "kubernetes"
# The shared repository: its index's database and its artifacts' location.
SHARED_REPOSITORY_VARIABLES = tuple(
    env_name(InferrerSettings, field) for field in ("repository_db_url", "repository_artifacts_url")
)
NAMESPACE = "modelfleet"
HEADER = (
    "# Rendered by `modelfleet render --kubernetes` from deploy/.env. Do not edit: edit the .env and "
    "render.\n"
)
_TOKEN_FILES = {MANAGEMENT_TOKEN_VAR: "management_token", INFERENCE_TOKEN_VAR: "inference_token"}


def _volume_patches() -> list[Object]:
    def claim(name: str, claim_name: str) -> Object:
        return {"name": name, "emptyDir": None, "persistentVolumeClaim": {"claimName": claim_name}}

    def patch(kind: str, name: str, volumes: list[Object]) -> Object:
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"volumes": volumes}}},
        }

    return [
        patch("Deployment", "inferrer", [claim("data", "models"), claim("jobs", "jobs")]),
        patch("StatefulSet", "modelhost", [claim("jobs", "jobs")]),
    ]


def _claims() -> list[Object]:
    # ReadWriteOnce: every pod of one machine may mount it (the gateway and the nodes share `jobs`).
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(name, "inferrer"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        }
        for name, size in (("models", "2Gi"), ("jobs", "10Gi"))
    ]


def _from_stores(var: str, optional: bool) -> Object:
    return {
        "name": var,
        "valueFrom": {"secretKeyRef": {"name": STORES_SECRET, "key": var, "optional": optional}},
    }


def _store_patches() -> list[Object]:
    aws = [_from_stores(var, optional=True) for var in S3_VARIABLES]
    # Two gateways without the shared repository would be two fleets: without its URLs in the
    # .env, the gateways do not start (the missing key is the pod's error).
    required = [_from_stores(var, optional=False) for var in SHARED_REPOSITORY_VARIABLES]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "inferrer"},
            "spec": {
                "replicas": 2,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "inferrer",
                                "envFrom": [{"secretRef": {"name": STORES_SECRET}}],
                                "env": required,
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "modelhost"},
            "spec": {"template": {"spec": {"containers": [{"name": "modelhost", "env": aws}]}}},
        },
    ]


def _kustomization(resources: list[str], **fields: Any) -> Object:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        **fields,
    }


def _dump(documents: list[Object]) -> str:
    return HEADER + yaml.safe_dump_all(documents, sort_keys=False, width=110)


def _secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text)
    os.chmod(path, 0o600)


def write_kubernetes(topology: Topology, env_file: Path | None, directory: Path = KUBERNETES_DIR) -> Path:
    """The base, the overlays and (from the .env) the secrets' files; returns the directory."""
    t = topology
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    tokens = service_tokens(env_file) if env_file else {}
    files: dict[str, list[Object]] = {
        "base/inferrer.yaml": gateway_objects(t, INFERENCE_TOKEN_VAR in tokens),
        "base/modelhost.yaml": node_objects(t),
        "base/nginx.yaml": balancer_objects(t),
        "base/prometheus.yaml": prometheus_objects(t),
        "base/example-model.yaml": [example_job(t)],
        "base/kustomization.yaml": [
            _kustomization(
                ["inferrer.yaml", "modelhost.yaml", "nginx.yaml", "prometheus.yaml", "example-model.yaml"],
                secretGenerator=[
                    {
                        "name": TOKENS_SECRET,
                        "files": [
                            f"{name}=secrets/{name}"
                            for var, name in _TOKEN_FILES.items()
                            if var == MANAGEMENT_TOKEN_VAR or var in tokens
                        ],
                    }
                ],
            )
        ],
        "overlays/one-machine/namespace.yaml": [namespace],
        "overlays/one-machine/volumes.yaml": _claims(),
        "overlays/one-machine/volumes-patch.yaml": _volume_patches(),
        "overlays/one-machine/kustomization.yaml": [
            _kustomization(
                ["namespace.yaml", "../../base", "volumes.yaml"],
                namespace=NAMESPACE,
                patches=[{"path": "volumes-patch.yaml"}],
            )
        ],
        "overlays/shared-stores/namespace.yaml": [namespace],
        "overlays/shared-stores/stores-patch.yaml": _store_patches(),
        "overlays/shared-stores/kustomization.yaml": [
            _kustomization(
                ["namespace.yaml", "../../base"],
                namespace=NAMESPACE,
                secretGenerator=[{"name": STORES_SECRET, "envs": ["secrets/stores.env"]}],
                patches=[{"path": "stores-patch.yaml"}],
            )
        ],
    }
    for name, documents in files.items():
        write_atomic(directory / name, _dump(documents))
    for var, value in tokens.items():
        _secret_file(directory / "base" / "secrets" / _TOKEN_FILES[var], value)
    if env_file:
        stores = "".join(f"{var}={value}\n" for var, value in storage_environment(env_file).items())
        _secret_file(
            directory / "overlays/shared-stores/secrets/stores.env",
            "# From deploy/.env (modelfleet render --kubernetes).\n" + stores,
        )
    return directory
