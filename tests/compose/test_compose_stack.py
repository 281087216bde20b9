"""The whole fleet under docker-compose on a real engine: deploy, balance, scale under load, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from deploy.compose import write_compose
from deploy.ephemeral_fleet import free_ports, wait_until
from deploy.example_model import EXAMPLE_ROW, train_example
from deploy.topology import EXAMPLE_ENV_FILE, load_topology
from testbed.broker_server import BrokerClient
from tests.compose.autoscaling import autoscale_lines, burst_up_and_back, following
from tests.load_loop import LoadLoop
from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers

pytestmark = pytest.mark.compose

NODES = {"modelhost-1", "modelhost-2", "modelhost-3"}


@dataclass
class Stack:
    env_file: Path
    compose_file: Path
    project: str
    inferrer_port: int
    prometheus_port: int
    broker_port: int
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return bearer_headers(self.token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.inferrer_port}"

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-f", str(self.compose_file), "-p", self.project, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    def modelfleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "deploy.cli", "--env-file", str(self.env_file), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    def apply(self) -> dict[str, object]:
        result = self.modelfleet(
            "apply", "--compose", "--compose-file", str(self.compose_file), "--project", self.project
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def wait_serving(self, timeout_s: float = 120) -> None:
        def serving() -> bool:
            try:
                return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(serving, timeout_s, interval_s=0.5), self.compose("logs", "--tail=30").stdout


@pytest.fixture(scope="module")
def stack(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose")
    inferrer_port, prometheus_port, broker_port = free_ports(3)
    env_file = root / ".env"
    env_file.write_text(
        EXAMPLE_ENV_FILE.read_text()
        .replace("INFERRER_PORT=8000", f"INFERRER_PORT={inferrer_port}")
        .replace("PROMETHEUS_PORT=9090", f"PROMETHEUS_PORT={prometheus_port}")
        .replace("BROKER_PORT=6390", f"BROKER_PORT={broker_port}")
    )
    compose_file = root / "docker-compose.yml"
    write_compose(load_topology(env_file), compose_file)
    stack = Stack(env_file, compose_file, f"mftest{os.getpid()}", inferrer_port, prometheus_port, broker_port)
    # As a user would: the first `modelfleet token` (or render, or up) writes one into the .env.
    token = stack.modelfleet("token")
    assert token.returncode == 0, token.stderr
    stack.token = token.stdout.strip().splitlines()[-1]
    assert MANAGEMENT_TOKEN_VAR in env_file.read_text()
    started = time.monotonic()
    up = stack.compose("up", "-d")
    assert up.returncode == 0, up.stderr
    stack.wait_serving()
    print(f"docker-compose up: serving after {time.monotonic() - started:.1f}s")
    try:
        yield stack
    finally:
        down = stack.compose("down", "-v", "--timeout", "20")
        assert down.returncode == 0, down.stderr
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.project}"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert left.stdout.strip() == "", "containers left after down -v"


def _predict(stack: Stack, client: httpx.Client) -> httpx.Response:
    return client.post(f"{stack.url}/api/v1/models/iris/predict", json={"instances": [EXAMPLE_ROW]})


def test_deploy_and_predict_on_every_node(stack: Stack) -> None:
    deployed = httpx.post(
        f"{stack.url}/api/v1/models",
        headers=stack.auth,
        data={"name": "iris"},
        files={"file": ("iris.skops", train_example())},
        timeout=60,
    )
    assert deployed.status_code == 201, deployed.text
    assert set(deployed.json()["nodes_loaded"]) == NODES
    served: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(200):
            response = _predict(stack, client)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == [0]
            served[response.json()["node"]] += 1
    print("200 predictions per node:", dict(served))
    assert set(served) == NODES


def test_a_stream_binding_runs_on_the_stacks_broker(stack: Stack) -> None:
    """The broker service (published on loopback, its password from the .env): a binding of the
    example model, 2,000 messages through the producer route, each once in the output."""
    binding = {"name": "scores", "input": "rows", "output": "scores", "model": "iris", "batch": 200}
    created = httpx.post(f"{stack.url}/api/v1/streams", json=binding, headers=stack.auth, timeout=30)
    assert created.status_code == 201, created.text
    messages = [{"key": str(i), "instances": [EXAMPLE_ROW]} for i in range(2_000)]
    added = httpx.post(
        f"{stack.url}/api/v1/streams/scores/messages",
        json={"messages": messages},
        headers=stack.auth,
        timeout=60,
    )
    assert added.status_code == 201, added.text
    password = dotenv_values(stack.env_file)["BROKER_PASSWORD"]
    broker = BrokerClient(f"redis://:{password}@127.0.0.1:{stack.broker_port}/0")
    assert wait_until(lambda: broker.length("scores") >= 2_000, timeout_s=120, interval_s=0.5)
    outputs = broker.fields("scores")
    figures = httpx.get(f"{stack.url}/api/v1/streams/scores", headers=stack.auth, timeout=30).json()[
        "figures"
    ]
    print(f"2,000 messages through the compose stack's broker: {figures}")
    assert sorted(o["source_id"] for o in outputs) == sorted(added.json()["ids"])
    assert {o["predictions"] for o in outputs} == {"[0]"}
    assert figures["written"] == 2_000 and figures["pending"] == 0


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    def up() -> set[str]:
        response = httpx.get(
            f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query", params={"query": "up == 1"}
        )
        return {r["metric"].get("node", r["metric"]["job"]) for r in response.json()["data"]["result"]}

    assert wait_until(lambda: up() >= NODES | {"inferrer", "nginx"}, 60, interval_s=1), up()


def test_add_and_remove_a_node_under_load(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/models/iris/predict"
    with LoadLoop(url, {"instances": [EXAMPLE_ROW]}, max_requests=50_000, max_seconds=300) as load:
        assert wait_until(lambda: load.sent > 50, timeout_s=10)
        added = stack.modelfleet("nodes", "add")
        assert added.returncode == 0, added.stderr
        assert stack.apply()["added"] == ["modelhost-4"]
        before = load.mark()
        assert wait_until(lambda: load.nodes["modelhost-4"] > before["modelhost-4"], timeout_s=30)
        print("after adding modelhost-4:", load.report())

        removed = stack.modelfleet("nodes", "remove", "modelhost-4")
        assert removed.returncode == 0, removed.stderr
        assert stack.apply()["removed"] == ["modelhost-4"]
        after = load.mark()
        assert wait_until(lambda: load.sent > sum(after.values()) + 200, timeout_s=60)
    print("add and remove under load:", load.report())
    assert load.failures == [], load.failures[:5]
    assert load.nodes["modelhost-4"] == after["modelhost-4"], "the removed node still served"
    running = stack.compose("ps", "--services", "--filter", "status=running").stdout.split()
    assert "modelhost-4" not in running


def _container(stack: Stack, service: str) -> dict[str, Any]:
    ids = stack.compose("ps", "-q", service).stdout.split()
    inspect = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    state: dict[str, Any] = json.loads(inspect.stdout)[0]
    return state


def test_a_crashed_node_container_is_restarted_and_rejoins_under_load(stack: Stack) -> None:
    """The node's process dies (SIGKILL from the host, as in an OOM kill): the restart policy starts
    it again, it loads the active models, and nginx retries what it would have answered."""
    url = f"{stack.url}/api/v1/models/iris/predict"
    before = _container(stack, "modelhost-2")
    with LoadLoop(url, {"instances": [EXAMPLE_ROW]}, max_requests=50_000, max_seconds=180) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=10)
        os.kill(before["State"]["Pid"], signal.SIGKILL)
        killed_at = load.mark()

        def rejoined() -> bool:
            state = _container(stack, "modelhost-2")
            restarted = state["RestartCount"] > before["RestartCount"] and state["State"]["Running"]
            return restarted and load.nodes["modelhost-2"] > killed_at["modelhost-2"]

        assert wait_until(rejoined, timeout_s=120, interval_s=0.5)
    print("SIGKILL of modelhost-2's container process under load:", load.report())
    assert load.failures == [], load.failures[:5]


# The receiver monitoring/alertmanager.yml names (http://alert-webhook:9095/alerts): each body a line.
_WEBHOOK = """
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        sys.stdout.write(body.decode() + "\\n")
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("0.0.0.0", 9095), Receiver).serve_forever()
"""


def _alerts_received(container: str) -> list[dict[str, Any]]:
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stdout
    return [
        alert for line in logs.splitlines() if line.startswith("{") for alert in json.loads(line)["alerts"]
    ]


def test_alertmanager_receives_node_down_when_a_node_is_stopped(stack: Stack) -> None:
    """The stack's Prometheus evaluates the fleet's rules and sends to its Alertmanager, which posts
    to the documented webhook receiver: here a container on the stack's network that logs each post."""
    webhook = f"{stack.project}-alert-webhook"
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", webhook, "--network", f"{stack.project}_default",
         "--network-alias", "alert-webhook", "modelfleet-inferrer:latest", "python3", "-c", _WEBHOOK],
        capture_output=True, text=True,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        stopped_at = time.monotonic()
        assert stack.compose("stop", "modelhost-3").returncode == 0

        def node_down() -> list[dict[str, Any]]:
            return [
                a for a in _alerts_received(webhook)
                if a["labels"]["alertname"] == "ModelfleetNodeDown" and a["status"] == "firing"
            ]  # fmt: skip

        assert wait_until(lambda: bool(node_down()), timeout_s=180, interval_s=2), _alerts_received(webhook)
        print(f"ModelfleetNodeDown received {time.monotonic() - stopped_at:.0f} s after the stop")
        labels = node_down()[0]["labels"]
        assert labels["node"] == "modelhost-3" and labels["severity"] == "page", labels
        assert all(a["labels"].get("node") == "modelhost-3" for a in node_down())
    finally:
        assert stack.compose("start", "modelhost-3").returncode == 0
        subprocess.run(["docker", "rm", "-f", webhook], capture_output=True)

    def all_ready() -> bool:
        nodes = httpx.get(f"{stack.url}/api/v1/nodes", headers=stack.auth, timeout=10).json()["nodes"]
        return {n["id"] for n in nodes if n["ready"]} >= NODES

    assert wait_until(all_ready, timeout_s=120, interval_s=1)


def test_models_survive_down_and_up(stack: Stack) -> None:
    down = stack.compose("down", "--timeout", "20")
    assert down.returncode == 0, down.stderr
    up = stack.compose("up", "-d")
    assert up.returncode == 0, up.stderr
    stack.wait_serving()
    with httpx.Client(timeout=10) as client:
        response = _predict(stack, client)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "iris"
    binding = httpx.get(f"{stack.url}/api/v1/streams/scores", headers=stack.auth, timeout=30)
    assert binding.status_code == 200 and binding.json()["figures"]["written"] == 2_000  # the broker's volume


def test_the_nodes_follow_the_autoscaler_under_a_burst(stack: Stack) -> None:
    """The gateway given INFERRER_AUTOSCALE_* in the .env (compose passes them), and `modelfleet
    autoscale --compose` beside the stack: 3 -> 4 under a burst, back to 3 after keep-warm."""
    with stack.env_file.open("a") as env:
        env.write(autoscale_lines(3, 4))
    write_compose(load_topology(stack.env_file), stack.compose_file)
    recreated = stack.compose("up", "-d", "--no-deps", "inferrer")
    assert recreated.returncode == 0, recreated.stderr
    stack.wait_serving()
    args = ("--compose", "--compose-file", str(stack.compose_file), "--project", stack.project)
    with following(stack.env_file, *args):
        burst_up_and_back(stack.url, stack.auth, "iris", 3, 4)
    running = stack.compose("ps", "--services", "--filter", "status=running").stdout.split()
    assert "modelhost-4" not in running
