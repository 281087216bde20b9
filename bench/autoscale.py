"""A step load against an autoscaled fleet and against fixed fleets of its minimum and its maximum.

    .venv/bin/python -m bench.autoscale [--min 1] [--max 4] [--burst-s 30] [--idle-s 20]

The load: idle, burst, idle, burst, idle. A burst is `--concurrency` (32) clients sending one row
each; in between, one client sends a row every 0.2 s.

The model: a 200-tree forest served by scikit-learn, unbatched (about 20 ms a prediction), so that
the nodes, not the load generator, are what the bursts fill.

Each fleet prints:
- its node count every few seconds;
- p99 and failed requests per phase;
- node-seconds (the nodes that ran, summed over the run).

Against the fixed fleet of the maximum, the autoscaled fleet's node-seconds show the cost saved.
Against the fixed fleet of the minimum, its burst p99 shows the latency saved. Short keep-warm
and windows (as the fleet tests use) so that a run takes minutes; production defaults are longer.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from deploy.ephemeral_fleet import RunningFleet, start_fleet

ROW = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
FAST = {
    "INFERRER_AUTOSCALE_TARGET_IN_FLIGHT": "4",
    "INFERRER_AUTOSCALE_KEEP_WARM_S": "5",
    "INFERRER_AUTOSCALE_UP_WINDOW_S": "2",
    "INFERRER_AUTOSCALE_DOWN_WINDOW_S": "3",
    "INFERRER_AUTOSCALE_COOLDOWN_S": "1",
}


@dataclass
class Phase:
    name: str
    seconds: float
    concurrency: int  # 0: one client, a request every 0.2 s
    latencies: list[float] = field(default_factory=list)
    failed: int = 0


def _model() -> bytes:
    features, labels = load_iris(return_X_y=True)
    return sio.dumps(RandomForestClassifier(n_estimators=200, random_state=0).fit(features, labels))


async def _client(
    session: aiohttp.ClientSession, url: str, phase: Phase, until: float, pause_s: float
) -> None:
    while time.monotonic() < until:
        sent = time.monotonic()
        try:
            async with session.post(url, data=ROW, headers={"content-type": "application/json"}) as answer:
                await answer.read()
                ok = answer.status == 200
        except aiohttp.ClientError:
            ok = False
        phase.latencies.append(time.monotonic() - sent)
        phase.failed += not ok
        if pause_s:
            await asyncio.sleep(pause_s)


async def _run_phases(url: str, phases: list[Phase]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for phase in phases:
            until = time.monotonic() + phase.seconds
            clients = phase.concurrency or 1
            pause = 0.0 if phase.concurrency else 0.2
            await asyncio.gather(*(_client(session, url, phase, until, pause) for _ in range(clients)))


def _node_count(fleet: RunningFleet) -> int:
    try:
        return len(httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth, timeout=5).json()["nodes"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def run_fleet(label: str, args: list[str], nodes: int, phases: list[Phase]) -> tuple[float, list[Phase]]:
    """Node-seconds of the run, and its phases measured."""
    with tempfile.TemporaryDirectory() as tmp:
        env_lines = "".join(f"{k}={v}\n" for k, v in FAST.items())
        fleet = start_fleet(Path(tmp), nodes=nodes, env_lines=env_lines, extra_args=(*args, "--no-example"))
        try:
            answer = fleet.deploy("forest", _model(), runtime="sklearn", batching="false")
            assert answer.status_code == 201, answer.text
            counts: list[tuple[float, int]] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(1.0):
                    counts.append((time.monotonic(), _node_count(fleet)))

            sampler = threading.Thread(target=sample, daemon=True)
            started = time.monotonic()
            sampler.start()
            asyncio.run(_run_phases(f"{fleet.url}/api/v1/models/forest/predict", phases))
            done.set()
            sampler.join()
        finally:
            fleet.stop()
    node_seconds = sum(max(0, n) for _, n in counts)  # one sample a second
    timeline = " ".join(f"{t - started:.0f}s:{n}" for t, n in counts[::5])
    print(f"\n{label}: node count every 5 s: {timeline}")
    return node_seconds, phases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--min", type=int, default=1)
    parser.add_argument("--max", type=int, default=4)
    parser.add_argument("--burst-s", type=float, default=30)
    parser.add_argument("--idle-s", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    def phases() -> list[Phase]:
        return [
            Phase("idle 1", args.idle_s, 0), Phase("burst 1", args.burst_s, args.concurrency),
            Phase("idle 2", args.idle_s, 0), Phase("burst 2", args.burst_s, args.concurrency),
            Phase("idle 3", args.idle_s, 0),
        ]  # fmt: skip

    runs = {
        f"autoscaled {args.min}-{args.max}": run_fleet(
            "autoscaled",
            ["--min-nodes", str(args.min), "--max-nodes", str(args.max)],
            max(args.min, 1),
            phases(),
        ),
        f"fixed {args.max}": run_fleet(f"fixed {args.max}", ["--nodes", str(args.max)], args.max, phases()),
        f"fixed {args.min}": run_fleet(f"fixed {args.min}", ["--nodes", str(args.min)], args.min, phases()),
    }
    names = [p.name for p in phases()]
    print("\n| fleet | node-seconds | " + " | ".join(f"{n} p99 ms" for n in names) + " | failed |")
    print("|---|---:|" + "---:|" * len(names) + "---:|")
    for label, (node_seconds, measured) in runs.items():
        p99 = [float(np.percentile(p.latencies, 99)) * 1000 if p.latencies else 0.0 for p in measured]
        failed = sum(p.failed for p in measured)
        print(f"| {label} | {node_seconds:.0f} | " + " | ".join(f"{v:.0f}" for v in p99) + f" | {failed} |")


if __name__ == "__main__":
    main()
