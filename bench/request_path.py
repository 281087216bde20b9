"""Where a one-row predict spends its time: in-process, one node directly, nginx, the full chain.

    .venv/bin/python -m bench.request_path [--requests 500]

Starts a real 3-node fleet on free loopback ports, deploys a LogisticRegression on 20 features,
sends sequential (concurrency 1) one-row requests to each hop and prints a markdown table of
p50/p99 latency and req/s. A benchmark, not a test: numbers vary from run to run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import start_fleet


def _measure(call: Callable[[], object], requests: int) -> tuple[float, float, float]:
    for _ in range(min(50, requests)):
        call()  # warm up connections and caches
    latencies = []
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000, requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 20))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = features[:1]
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=3, extra_args=("--no-example",))
        try:
            deployed = fleet.deploy("logreg", sio.dumps(model)).json()
            body = orjson.dumps({"instances": row.tolist()})
            node_body = orjson.dumps(
                {"instances": row.tolist(), "version": deployed["version"], "sha256": deployed["sha256"]}
            )
            node = f"http://127.0.0.1:{fleet.node_ports[0]}"
            nginx = f"http://127.0.0.1:{fleet.ports['nginx']}"
            path = "/api/v1/models/logreg/predict"
            with httpx.Client(headers=fleet.auth) as client:  # nodes and nginx need the fleet's token
                rows = [
                    ("in-process predict()", lambda: model.predict(row)),
                    ("one modelhost, direct", lambda: client.post(node + path, content=node_body)),
                    ("nginx -> 3 modelhosts", lambda: client.post(nginx + path, content=node_body)),
                    (
                        "inferrer -> nginx -> 3 modelhosts",
                        lambda: client.post(fleet.url + path, content=body),
                    ),
                ]
                results = [(name, *_measure(call, args.requests)) for name, call in rows]
        finally:
            fleet.stop()
    print(f"\nLogisticRegression, 20 features, 1 row, concurrency 1, {args.requests} requests\n")
    print("| path | p50 ms | p99 ms | req/s |")
    print("|---|---|---|---|")
    for name, p50, p99, rate in results:
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
