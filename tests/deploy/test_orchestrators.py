"""The Swarm stack and the Kubernetes manifests: rendered from the topology and committed (they must
match a fresh render); each Kubernetes overlay rendered by `kubectl kustomize` and every object
validated strictly against the schemas of the two newest Kubernetes versions kubernetes-validate
carries; and the wiring a schema cannot check (a Service selecting no pod, a probe on a port no
container declares, a Secret nobody generates...). No cluster runs here: docs/orchestrators.md says so.
"""

from __future__ import annotations

import copy
import filecmp
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from deploy.kustomization import KUBERNETES_DIR, write_kubernetes
from deploy.swarm import SWARM_DIR, write_swarm
from deploy.tokens import ensure_management_token
from deploy.topology import EXAMPLE_ENV_FILE, load_topology

Object = dict[str, Any]
OVERLAYS = ("one-machine", "shared-stores")
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def newest_versions() -> list[str]:
    minors = sorted({major_minor(v) for v in all_versions()}, key=lambda m: tuple(map(int, m.split("."))))
    return [f"{minor}.0" for minor in minors[-2:]]


def _rendered(tmp_path: Path, nodes: int = 3) -> Path:
    """The manifests of a .env with `nodes` nodes and a token, as `modelfleet render --kubernetes`."""
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE_ENV_FILE.read_text())
    ensure_management_token(env_file)
    return write_kubernetes(load_topology(env_file).with_node_count(nodes), env_file, tmp_path / "kubernetes")


def kustomize(directory: Path) -> list[Object]:
    assert shutil.which("kubectl"), "kubectl (with kustomize) is needed: it ships with the test machines"
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _pods(docs: list[Object]) -> list[tuple[Object, Object]]:
    """(workload, its pod template) for every workload."""
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in WORKLOADS]


def _selects(selector: dict[str, str], template: Object) -> bool:
    return bool(selector) and selector.items() <= template["metadata"].get("labels", {}).items()


def _named(docs: list[Object], kind: str) -> dict[str, Object]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity ("250m", "64Mi", "2Gi", "1") as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    text = str(value)
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def wiring_problems(docs: list[Object]) -> list[str]:
    problems = []
    pods = _pods(docs)
    services, config_maps, secrets = (
        _named(docs, "Service"),
        _named(docs, "ConfigMap"),
        _named(docs, "Secret"),
    )
    for name, service in services.items():
        chosen = [t for _, t in pods if _selects(service["spec"].get("selector", {}), t)]
        if not chosen:
            problems.append(f"Service {name} selects no pod")
        for port in service["spec"]["ports"]:
            declared = {
                p.get("name") for t in chosen for c in t["spec"]["containers"] for p in c.get("ports", [])
            }
            if isinstance(port["targetPort"], str) and port["targetPort"] not in declared:
                problems.append(f"Service {name} targets port {port['targetPort']}, declared: {declared}")
    for workload, template in pods:
        where = f"{workload['kind']} {workload['metadata']['name']}"
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                problems.append(f"{where}: ConfigMap {volume['configMap']['name']} does not exist")
            if "secret" in volume and volume["secret"]["secretName"] not in secrets:
                problems.append(f"{where}: Secret {volume['secret']['secretName']} does not exist")
        account = spec.get("serviceAccountName")
        if account and account not in _named(docs, "ServiceAccount"):
            problems.append(f"{where}: ServiceAccount {account} does not exist")
        for container in spec["containers"]:
            names = {p.get("name") for p in container.get("ports", [])}
            numbers = {p["containerPort"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in names | numbers:
                    problems.append(
                        f"{where}/{container['name']}: {probe} on port {port!r}, declared {names}"
                    )
            for resource, limit in container["resources"]["limits"].items():
                if _quantity(container["resources"]["requests"].get(resource, "0")) > _quantity(limit):
                    problems.append(f"{where}/{container['name']}: {resource} request above its limit")
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            if mounts - {v["name"] for v in spec.get("volumes", [])}:
                problems.append(f"{where}/{container['name']}: mounts {mounts} without volumes")
            for source in container.get("envFrom", []):
                if source.get("secretRef", {}).get("name", "") not in secrets | config_maps:
                    problems.append(f"{where}: envFrom {source} does not exist")
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    problems.append(f"{where}: env {var['name']} from missing Secret {ref['name']}")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for name, policy in _named(docs, kind).items():
            selector = policy["spec"].get("selector", policy["spec"].get("podSelector", {}))["matchLabels"]
            if not any(_selects(selector, t) for _, t in pods):
                problems.append(f"{kind} {name} selects no pod")
            for rule in policy["spec"].get("ingress", []):
                for peer in rule["from"]:
                    if not any(_selects(peer["podSelector"]["matchLabels"], t) for _, t in pods):
                        problems.append(f"{kind} {name} lets in {peer}, which matches no pod")
    for name, scaler in _named(docs, "HorizontalPodAutoscaler").items():
        target = scaler["spec"]["scaleTargetRef"]
        if target["name"] not in _named(docs, target["kind"]):
            problems.append(f"HPA {name} scales a missing {target['kind']} {target['name']}")
        # The gateway's autoscaler exports the desired count the HPA follows: the same bounds.
        gateway = _env(_named(docs, "Deployment")["inferrer"]["spec"]["template"]["spec"]["containers"][0])
        bounds = (gateway.get("INFERRER_AUTOSCALE_MIN_NODES"), gateway.get("INFERRER_AUTOSCALE_MAX_NODES"))
        if bounds != (str(scaler["spec"]["minReplicas"]), str(scaler["spec"]["maxReplicas"])):
            problems.append(f"HPA {name}'s bounds differ from the gateway's autoscaler's {bounds}")
    for name, binding in _named(docs, "RoleBinding").items():
        if binding["roleRef"]["name"] not in _named(docs, "Role"):
            problems.append(f"RoleBinding {name}: no Role {binding['roleRef']['name']}")
    return problems


def _env(container: Object) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container.get("env", [])}


def node_wiring_problems(docs: list[Object]) -> list[str]:
    """The fleet's own wiring: stable node ids, and the names the gateway and nginx resolve."""
    problems = []
    nodes = _named(docs, "StatefulSet")["modelhost"]
    services = _named(docs, "Service")
    governing = services.get(nodes["spec"]["serviceName"], {}).get("spec", {})
    if governing.get("clusterIP") != "None" or not governing.get("publishNotReadyAddresses"):
        problems.append("the StatefulSet's Service is not headless, listing every pod")
    node_env = _env(nodes["spec"]["template"]["spec"]["containers"][0])
    if node_env.get("MODELHOST_NODE_ID") != {"fieldRef": {"fieldPath": "metadata.name"}}:
        problems.append("node ids are not the pods' stable names")
    gateway = _named(docs, "Deployment")["inferrer"]["spec"]["template"]["spec"]["containers"][0]
    name = _env(gateway)["INFERRER_NODES_DNS"].partition(":")[0]
    if name != nodes["spec"]["serviceName"]:
        problems.append(f"the gateway resolves {name}, not the StatefulSet's Service")
    nginx = _named(docs, "Deployment")["nginx"]["spec"]["template"]["spec"]["containers"][0]
    upstream = services.get(nginx["command"][1], {}).get("spec", {})
    if upstream.get("clusterIP") != "None" or upstream.get("publishNotReadyAddresses"):
        problems.append(f"nginx resolves {nginx['command'][1]}: not a headless Service of the ready nodes")
    elif not _selects(upstream["selector"], nodes["spec"]["template"]):
        problems.append("nginx's Service does not select the nodes")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_validates_strictly_and_is_wired(tmp_path: Path, overlay: str) -> None:
    docs = kustomize(_rendered(tmp_path) / "overlays" / overlay)
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "NetworkPolicy", "Job", "Namespace"} <= kinds, kinds  # fmt: skip
    versions = newest_versions()
    for doc in docs:
        for version in versions:
            kubernetes_validate.validate(doc, version, strict=True)
    assert wiring_problems(docs) == []
    assert node_wiring_problems(docs) == []
    assert all(d["metadata"].get("namespace") == "modelfleet" for d in docs if d["kind"] != "Namespace")
    for _, template in _pods(docs):
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            assert container["resources"]["limits"] and container["resources"]["requests"]
    print(f"{overlay}: {len(docs)} objects valid for Kubernetes {versions}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_five_nodes_render_a_statefulset_of_five_that_validates(tmp_path: Path, overlay: str) -> None:
    docs = kustomize(_rendered(tmp_path, nodes=5) / "overlays" / overlay)
    assert _named(docs, "StatefulSet")["modelhost"]["spec"]["replicas"] == 5
    for doc in docs:
        for version in newest_versions():
            kubernetes_validate.validate(doc, version, strict=True)
    assert wiring_problems(docs) == [] and node_wiring_problems(docs) == []


def test_the_wiring_checks_catch_what_a_schema_cannot(tmp_path: Path) -> None:
    """Each break is schema-valid, and each is caught."""
    docs = kustomize(_rendered(tmp_path) / "overlays" / "one-machine")

    def broken(change: Any) -> list[str]:
        copied = copy.deepcopy(docs)
        change(copied)
        return wiring_problems(copied) + node_wiring_problems(copied)

    def container(docs: list[Object], kind: str, name: str) -> Object:
        container: Object = _named(docs, kind)[name]["spec"]["template"]["spec"]["containers"][0]
        return container

    assert broken(lambda d: _named(d, "Service")["inferrer"]["spec"]["selector"].update(x="y"))
    assert broken(lambda d: container(d, "StatefulSet", "modelhost")["ports"][0].update(name="web"))
    assert broken(lambda d: d.remove(next(x for x in d if x["kind"] == "Secret")))
    assert broken(lambda d: d.remove(_named(d, "ConfigMap")["nginx-conf"]))
    assert broken(lambda d: container(d, "StatefulSet", "modelhost")["env"].pop(0))
    assert broken(lambda d: _named(d, "Service")["modelhost-peers"]["spec"].pop("publishNotReadyAddresses"))
    assert broken(lambda d: container(d, "Deployment", "nginx")["resources"]["requests"].update(memory="1Ti"))


def test_the_committed_files_match_a_fresh_render(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    fresh_kubernetes = write_kubernetes(topology, None, tmp_path / "kubernetes")
    fresh_swarm = write_swarm(topology, None, tmp_path / "swarm").parent
    for fresh, committed in ((fresh_kubernetes, KUBERNETES_DIR), (fresh_swarm, SWARM_DIR)):
        for path in fresh.rglob("*"):
            if path.is_file():
                twin = committed / path.relative_to(fresh)
                assert twin.exists() and filecmp.cmp(path, twin, shallow=False), (
                    f"{twin} differs: run `modelfleet render --kubernetes` and commit"
                )


STORES = (
    "INFERRER_REPOSITORY_DB_URL=postgresql+psycopg://fleet:pa55word@db:5432/fleet\n"
    "INFERRER_REPOSITORY_ARTIFACTS_URL=s3://fleet-models/models\n"
    "AWS_SECRET_ACCESS_KEY=s3cr3t-key-value\n"
    "MODELFLEET_INFERENCE_TOKEN=inference-token-0123456789abcdef\n"
)


def test_an_inference_token_and_shared_stores_reach_the_pods_as_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE_ENV_FILE.read_text() + STORES)
    ensure_management_token(env_file)
    directory = write_kubernetes(load_topology(env_file), env_file, tmp_path / "kubernetes")
    docs = kustomize(directory / "overlays" / "shared-stores")
    assert wiring_problems(docs) == [] and node_wiring_problems(docs) == []
    secrets = [d for d in docs if d["kind"] == "Secret"]
    stores = next(s for s in secrets if s["metadata"]["name"].startswith("modelfleet-stores"))
    assert {"INFERRER_REPOSITORY_DB_URL", "AWS_SECRET_ACCESS_KEY"} <= set(stores["data"])
    gateway = _named(docs, "Deployment")["inferrer"]
    assert gateway["spec"]["replicas"] == 2
    env = _env(gateway["spec"]["template"]["spec"]["containers"][0])
    assert env["MODELFLEET_INFERENCE_TOKEN_FILE"].endswith("/inference_token")
    assert env["INFERRER_REPOSITORY_DB_URL"]["secretKeyRef"]["optional"] is False  # no stores: no start
    for path in directory.rglob("*.yaml"):
        assert "pa55word" not in path.read_text() and "s3cr3t" not in path.read_text()


def test_the_stack_holds_no_token_and_every_service_is_reachable_without_ipvs(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE_ENV_FILE.read_text() + STORES)
    token = ensure_management_token(env_file)
    assert token
    stack_file = write_swarm(load_topology(env_file), env_file, tmp_path / "swarm")
    for secret in (token, "pa55word", "s3cr3t", "inference-token-0123456789abcdef"):
        assert secret not in stack_file.read_text()  # the stack file may be committed
    assert "pa55word" in (tmp_path / "swarm" / "secrets" / "gateway.env").read_text()
    assert "pa55word" not in (tmp_path / "swarm" / "secrets" / "node.env").read_text()
    assert (tmp_path / "swarm" / "secrets" / "management_token").read_text() == token
    assert (tmp_path / "swarm" / "secrets" / "management_token").stat().st_mode & 0o077 == 0
    stack = yaml.safe_load(stack_file.read_text())
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        assert all(port["mode"] == "host" for port in service.get("ports", [])), name
    assert stack["services"]["modelhost"]["deploy"]["update_config"]["order"] == "start-first"
