"""The autoscaler's burst on a stack of the real engine, shared by the compose and the Swarm tests:
`modelfleet autoscale` runs beside the stack while a burst at concurrency 32 scales the nodes up
and a light load runs through the scale-down, every request answered."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deploy.ephemeral_fleet import wait_until
from deploy.example_model import EXAMPLE_ROW
from tests.load_loop import LoadLoop

# Short windows so that a test sees a whole cycle; one prediction in flight per node is the target,
# so that a burst of the fast example model needs more nodes.
FAST = {
    "INFERRER_AUTOSCALE_TARGET_IN_FLIGHT": "1",
    "INFERRER_AUTOSCALE_KEEP_WARM_S": "5",
    "INFERRER_AUTOSCALE_UP_WINDOW_S": "2",
    "INFERRER_AUTOSCALE_DOWN_WINDOW_S": "3",
    "INFERRER_AUTOSCALE_COOLDOWN_S": "2",
}


def autoscale_lines(min_nodes: int, max_nodes: int) -> str:
    settings = {
        **FAST,
        "INFERRER_AUTOSCALE_MIN_NODES": str(min_nodes),
        "INFERRER_AUTOSCALE_MAX_NODES": str(max_nodes),
    }
    return "".join(f"{var}={value}\n" for var, value in settings.items())


@contextmanager
def following(env_file: Path, *args: str, cwd: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """`modelfleet autoscale <args>` running until the block ends (stopped by its PID, SIGINT)."""
    argv = [sys.executable, "-m", "deploy.cli", "--env-file", str(env_file), "autoscale", *args]
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        print("modelfleet autoscale:", output[-2000:])


def ready_nodes(url: str, auth: dict[str, str]) -> int:
    try:
        nodes = httpx.get(f"{url}/api/v1/nodes", headers=auth, timeout=10).json()["nodes"]
    except (httpx.HTTPError, ValueError, KeyError):
        return -1
    return sum(1 for node in nodes if node["ready"])


def burst_up_and_back(url: str, auth: dict[str, str], model: str, min_nodes: int, max_nodes: int) -> None:
    """From `min_nodes`: a burst scales up (new nodes take traffic), then back to the minimum under
    a light load, no request failed in either."""
    assert wait_until(lambda: ready_nodes(url, auth) == min_nodes, timeout_s=120, interval_s=1)
    predict = f"{url}/api/v1/models/{model}/predict"
    body = {"instances": [EXAMPLE_ROW]}
    started = time.monotonic()
    with LoadLoop(predict, body, max_requests=500_000, max_seconds=240, concurrency=32) as burst:
        assert wait_until(lambda: ready_nodes(url, auth) == max_nodes, timeout_s=180, interval_s=1), (
            burst.report()
        )
        scaled_after = time.monotonic() - started
        assert wait_until(lambda: len(burst.mark()) == max_nodes, timeout_s=60), burst.report()
        time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    print(f"\nburst: {burst.report()}; {max_nodes} nodes ready after {scaled_after:.1f} s")
    assert burst.failures == [], burst.failures[:5]
    with LoadLoop(predict, body, max_requests=500_000, max_seconds=240, concurrency=2) as light:
        assert wait_until(lambda: ready_nodes(url, auth) == min_nodes, timeout_s=180, interval_s=1)
        time.sleep(2)  # a few answers more once the last removed node is gone
    print(f"scale-down under load: {light.report()}")
    assert light.failures == [], light.failures[:5]

    def logged() -> set[str]:
        events = httpx.get(f"{url}/api/v1/autoscaler", headers=auth, timeout=10).json()["events"]
        return {event["kind"] for event in events}

    # the removed node's stop is reported once it drained and stopped, after it left the ready list
    assert wait_until(lambda: {"up", "started", "down", "stopped"} <= logged(), timeout_s=60), logged()
