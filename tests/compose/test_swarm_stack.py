"""The fleet on Docker Swarm, on a real engine: the "Docker Swarm" section of docs/orchestrators.md
run as printed in a copy of this checkout (engine, images, `modelfleet render`, `swarm init`, `stack
deploy`); then predictions from every task, the secrets, `docker service scale` 3 -> 5 -> 2, a killed
task and a rolling update of the node image, each under load at concurrency 16 with no request
failed; then the section's stop block (stack removed, swarm left, engine stopped) after which nothing
of the engine is left on the host.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from deploy.ephemeral_fleet import port_is_bound, wait_until
from deploy.example_model import EXAMPLE_NAME, EXAMPLE_ROW
from tests.compose.autoscaling import autoscale_lines, burst_up_and_back, following, ready_nodes
from tests.compose.conftest import ENGINE_SCRIPT, engine_answers
from tests.compose.test_readme_compose import checkout_copy, engine_processes, host_network, run_line
from tests.harness import DOCS
from tests.load_loop import LoadLoop
from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers

pytestmark = pytest.mark.compose

ORCHESTRATORS = DOCS / "orchestrators.md"
STACK = "modelfleet"
NODES = f"{STACK}_modelhost"
STACK_LABEL = f"com.docker.stack.namespace={STACK}"
URL = "http://127.0.0.1:8000"
PREDICT = f"{URL}/api/v1/models/{EXAMPLE_NAME}/predict"


def swarm_block(containing: str) -> list[str]:
    """The Swarm section's bash block with a line containing `containing`."""
    return next(block for block in swarm_blocks() if any(containing in line for line in block))


def swarm_blocks() -> list[list[str]]:
    """The command lines of each bash block of the Swarm section, in order."""
    text = ORCHESTRATORS.read_text()
    section = text[text.index("## Docker Swarm") :]
    end = section.find("\n## ", 1)
    section = section[:end] if end > 0 else section
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def docker(*args: str, timeout_s: float = 300) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@dataclass
class Swarm:
    checkout: Path
    token: str

    def running_slots(self) -> set[int]:
        """The node service's tasks that run now (their slots), from the engine's view."""
        lines = docker("service", "ps", NODES, "--filter", "desired-state=running", "--format",
                       "{{.Name}} {{.CurrentState}}").splitlines()  # fmt: skip
        return {int(line.split()[0].rsplit(".", 1)[1]) for line in lines if " Running " in f" {line} "}

    def serving_nodes(self) -> set[str]:
        """The node ids the gateway lists as ready."""
        answer = httpx.get(f"{URL}/api/v1/nodes", headers=bearer_headers(self.token), timeout=5).json()
        return {node["id"] for node in answer["nodes"] if node["ready"]}


def _serves_on(nodes: set[str]) -> bool:
    served: set[str] = set()
    with httpx.Client(timeout=5) as client:
        for _ in range(60):
            try:
                answer = client.post(PREDICT, json={"instances": [EXAMPLE_ROW]})
            except httpx.HTTPError:
                return False
            if answer.status_code != 200:
                return False
            served.add(answer.json()["node"])
    return served == nodes


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    start_block, stop_block = swarm_block("swarm init"), swarm_block("swarm leave")
    assert not port_is_bound(8000) and not port_is_bound(9090), "ports 8000 and 9090 are in use"
    # A machine with no engine: stop the one an earlier test (or the test command) started.
    stopped = subprocess.run(
        ["bash", str(ENGINE_SCRIPT), "stop"], capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not engine_answers()
    before = host_network()
    checkout = checkout_copy(tmp_path_factory.mktemp("swarm") / "modelfleet")
    try:
        for line in start_block:
            run_line(line, checkout)
        token = dotenv_values(checkout / "deploy" / ".env")[MANAGEMENT_TOKEN_VAR]
        assert token
        swarm = Swarm(checkout, token)
        every = {f"modelhost-{slot}" for slot in (1, 2, 3)}
        assert wait_until(lambda: _serves_on(every), timeout_s=240, interval_s=2), docker(
            "service", "ps", NODES, "--no-trunc"
        )
        yield swarm
    finally:
        for line in stop_block:
            if "engine.sh stop" in line:
                # `stack rm` keeps the volumes, as the section says; the test removes them too, once
                # the engine has removed the stack's containers.
                assert wait_until(lambda: docker("ps", "-aq").strip() == "", timeout_s=120)
                volumes = docker("volume", "ls", "-q", "--filter", f"label={STACK_LABEL}").split()
                if volumes:
                    docker("volume", "rm", *volumes)
            run_line(line, checkout)
    assert not engine_answers()
    assert engine_processes() == [], engine_processes()
    after = host_network()
    assert after == before, f"the host's network before the engine: {before}, after its stop: {after}"


def test_every_task_answers_and_prometheus_finds_them(swarm: Swarm) -> None:
    served: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(150):
            answer = client.post(PREDICT, json={"instances": [EXAMPLE_ROW]})
            assert answer.status_code == 200, answer.text
            served[answer.json()["node"]] += 1
    print("150 predictions through the stack:", dict(served))
    assert set(served) == {"modelhost-1", "modelhost-2", "modelhost-3"}
    # nginx re-resolves the tasks every second, the gateway every discovery interval (2 s): its list
    # catches up within a few seconds of the last task turning healthy.
    assert wait_until(lambda: swarm.serving_nodes() == set(served), timeout_s=30, interval_s=1), (
        swarm.serving_nodes()
    )

    def modelhost_targets_up() -> int:
        query = {"query": 'up{job="modelhost"} == 1'}
        answer = httpx.get("http://127.0.0.1:9090/api/v1/query", params=query, timeout=5).json()
        return len(answer["data"]["result"])

    assert wait_until(lambda: modelhost_targets_up() == 3, timeout_s=60, interval_s=1)


def test_a_stream_binding_runs_on_the_stacks_broker(swarm: Swarm) -> None:
    """The broker service (its password a secret): the example model's binding, 500 messages
    through the producer route, each written once; the password is in no service's spec but the
    gateway's broker URL (from its stores' env file, as the database URLs)."""
    auth = bearer_headers(swarm.token)
    binding = {"name": "scores", "input": "rows", "output": "scores", "model": EXAMPLE_NAME, "batch": 100}
    created = httpx.post(f"{URL}/api/v1/streams", json=binding, headers=auth, timeout=30)
    assert created.status_code == 201, created.text
    messages = [{"key": str(i), "instances": [EXAMPLE_ROW]} for i in range(500)]
    added = httpx.post(
        f"{URL}/api/v1/streams/scores/messages", json={"messages": messages}, headers=auth, timeout=60
    )
    assert added.status_code == 201, added.text

    def figures() -> dict[str, Any]:
        answer = httpx.get(f"{URL}/api/v1/streams/scores", headers=auth, timeout=10).json()
        found: dict[str, Any] = answer["figures"]
        return found

    assert wait_until(lambda: figures()["written"] == 500, timeout_s=120, interval_s=1), figures()
    print(f"500 messages through the Swarm stack's broker: {figures()}")
    password = dotenv_values(swarm.checkout / "deploy" / ".env")["BROKER_PASSWORD"]
    assert password and password not in docker("service", "inspect", f"{STACK}_broker")


def test_the_tokens_are_secrets_not_environment(swarm: Swarm) -> None:
    for service in ("inferrer", "modelhost", "example-model"):
        assert swarm.token not in docker("service", "inspect", f"{STACK}_{service}")
    for container in docker("ps", "-q", "--filter", f"label={STACK_LABEL}").split():
        inspected = json.loads(docker("inspect", container))[0]
        assert swarm.token not in json.dumps(inspected["Config"]["Env"])
        environ = docker("exec", container, "cat", "/proc/1/environ")
        assert swarm.token not in environ
    gateway = docker("ps", "-q", "--filter", f"name={STACK}_inferrer.").split()[0]
    assert docker("exec", gateway, "cat", "/run/secrets/management_token").strip() == swarm.token
    # ...and it is the token the fleet checks.
    refused = httpx.get(f"{URL}/api/v1/nodes", headers=bearer_headers("x" * 43), timeout=5)
    assert refused.status_code == 401


def _scale(replicas: int) -> None:
    docker("service", "scale", "--detach=false", f"{NODES}={replicas}", timeout_s=300)


def test_scale_three_to_five_then_five_to_two_under_load(swarm: Swarm) -> None:
    (scale_line,) = swarm_block("service scale")
    assert scale_line.endswith(f"{NODES}=5"), scale_line
    with LoadLoop(PREDICT, {"instances": [EXAMPLE_ROW]}, max_requests=60_000, max_seconds=300) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=20)
        run_line(scale_line, swarm.checkout)  # as printed (it returns once the tasks run)
        before = load.mark()
        assert wait_until(
            lambda: all(load.nodes[f"modelhost-{s}"] > before[f"modelhost-{s}"] for s in (4, 5)), timeout_s=90
        ), load.report()
        print("3 -> 5:", load.report())
        _scale(2)
        assert wait_until(lambda: swarm.running_slots() == {1, 2}, timeout_s=120)
        gone = load.mark()
        assert wait_until(lambda: load.sent > sum(gone.values()) + 300, timeout_s=60)
        after = load.mark()
    print("3 -> 5 -> 2:", load.report())
    assert load.failures == [], load.failures[:5]
    for slot in (3, 4, 5):  # removed tasks got nothing once they were gone
        assert after[f"modelhost-{slot}"] == gone[f"modelhost-{slot}"], (slot, gone, after)
    assert wait_until(lambda: swarm.serving_nodes() == {"modelhost-1", "modelhost-2"}, timeout_s=30)


def test_a_killed_task_is_replaced_under_load(swarm: Swarm) -> None:
    _scale(2)
    victim = docker("ps", "-q", "--filter", f"name={NODES}.2.").split()[0]
    with LoadLoop(PREDICT, {"instances": [EXAMPLE_ROW]}, max_requests=40_000, max_seconds=240) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=20)
        docker("kill", victim)
        killed = load.mark()

        def replaced() -> bool:
            fresh = docker("ps", "-q", "--filter", f"name={NODES}.2.").split()
            return bool(fresh) and fresh[0] != victim and load.nodes["modelhost-2"] > killed["modelhost-2"]

        assert wait_until(replaced, timeout_s=120, interval_s=0.5), load.report()
    print("a killed task under load:", load.report())
    assert load.failures == [], load.failures[:5]


def test_a_rolling_update_of_the_node_image_under_load(swarm: Swarm) -> None:
    _scale(2)
    docker("tag", "modelfleet-modelhost:latest", "modelfleet-modelhost:rolled")
    with LoadLoop(PREDICT, {"instances": [EXAMPLE_ROW]}, max_requests=60_000, max_seconds=300) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=20)
        docker("service", "update", "--detach=false", "--image", "modelfleet-modelhost:rolled", NODES,
               timeout_s=300)  # fmt: skip
        updated = load.mark()
        assert wait_until(lambda: load.sent > sum(updated.values()) + 200, timeout_s=60)
    print("rolling update under load:", load.report())
    assert load.failures == [], load.failures[:5]
    images = docker("service", "ps", NODES, "--filter", "desired-state=running", "--format", "{{.Image}}")
    assert set(images.split()) == {"modelfleet-modelhost:rolled"}


def test_the_nodes_follow_the_autoscaler_under_a_burst(swarm: Swarm) -> None:
    """The section's autoscaling block: bounds in the .env, render and deploy again, then `modelfleet
    autoscale --swarm`: 2 -> 4 replicas under a burst, back to 2 after keep-warm."""
    render, deploy, follow = swarm_block("modelfleet autoscale")
    assert "render" in render and "stack deploy" in deploy and follow.endswith("autoscale --swarm")
    _scale(2)
    env_file = swarm.checkout / "deploy" / ".env"
    with env_file.open("a") as env:
        env.write(autoscale_lines(2, 4))
    for line in (render, deploy):
        run_line(line, swarm.checkout)
    auth = bearer_headers(swarm.token)
    assert wait_until(lambda: ready_nodes(URL, auth) == 2 and view_enabled(auth), timeout_s=180, interval_s=1)
    with following(env_file, "--swarm", cwd=swarm.checkout):
        burst_up_and_back(URL, auth, EXAMPLE_NAME, 2, 4)
    assert len(swarm.running_slots()) == 2


def view_enabled(auth: dict[str, str]) -> bool:
    """The gateway restarted with the autoscaler's settings."""
    try:
        return bool(httpx.get(f"{URL}/api/v1/autoscaler", headers=auth, timeout=5).json()["enabled"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False
