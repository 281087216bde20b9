"""Stream bindings against online predictions, on the same fleet.

    .venv/bin/python -m bench.streams [--messages 100000] [--rate 2000] [--seconds 10]

A real fleet (`modelfleet up`: two nodes, two gateway processes, the launcher's broker) and a
logistic regression over 6 features; one row per request and per message. Prints a table:
  - online: wrk, 32 connections, `--seconds` long: predictions per second, latency p50 and p99;
  - stream backlog: `--messages` produced first, then a binding made (start=earliest, batch 500):
    messages per second until every output is written;
  - stream at a steady rate: `--rate` messages per second for `--seconds` (paced in 50 ms steps):
    produce-to-output latency p50 and p99 (an output's id time less its source id's, both the
    broker's clock).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import skops.io as sio
from dotenv import dotenv_values
from sklearn.linear_model import LogisticRegression

from bench.loadgen import run_wrk
from deploy.ephemeral_fleet import RunningFleet, free_ports, start_fleet, wait_until
from testbed.broker_server import BrokerClient

FEATURES = 6


def _client(fleet: RunningFleet) -> BrokerClient:
    values = dotenv_values(fleet.env_file)
    return BrokerClient(f"redis://:{values['BROKER_PASSWORD']}@127.0.0.1:{values['BROKER_PORT']}/0")


def _bind(fleet: RunningFleet, name: str) -> None:
    body = {"name": name, "input": f"{name}-in", "output": f"{name}-out", "model": "bench", "batch": 500}
    answer = httpx.post(f"{fleet.url}/api/v1/streams", json=body, headers=fleet.auth, timeout=30)
    assert answer.status_code == 201, answer.text


def _produce(client: BrokerClient, stream: str, rows: np.ndarray) -> None:
    with client.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.xadd(stream, {"instances": orjson.dumps([row.tolist()]).decode()})
        pipe.execute()


def _latencies_ms(client: BrokerClient, stream: str) -> np.ndarray:
    return np.array(
        [int(mid.split("-")[0]) - int(f["source_id"].split("-")[0]) for mid, f in client.entries(stream)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2_000, FEATURES))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(
            Path(tmp), nodes=2, extra_args=("--inferrer-workers", "2"), env_lines=f"BROKER_PORT={port}\n"
        )
        try:
            assert fleet.deploy("bench", sio.dumps(model)).status_code == 201
            client = _client(fleet)
            body = orjson.dumps({"instances": [features[0].tolist()]})
            online = run_wrk(f"{fleet.url}/api/v1/models/bench/predict", body, 32, args.seconds)

            _produce(client, "backlog-in", rng.normal(size=(args.messages, FEATURES)))
            started = time.perf_counter()
            _bind(fleet, "backlog")
            assert wait_until(lambda: client.length("backlog-out") >= args.messages, 900, 0.2)
            drained = args.messages / (time.perf_counter() - started)

            _bind(fleet, "steady")
            step = max(1, args.rate // 20)
            sent, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < args.seconds:
                _produce(client, "steady-in", rng.normal(size=(step, FEATURES)))
                sent += step
                time.sleep(max(0.0, sent / args.rate - (time.perf_counter() - started)))
            assert wait_until(lambda: client.length("steady-out") >= sent, 300, 0.2)
            latency = _latencies_ms(client, "steady-out")
        finally:
            fleet.stop()
    print("| path | per second | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(f"| online predict (wrk, c=32) | {online.rps:,.0f} | {online.p50_ms:.1f} | {online.p99_ms:.1f} |")
    print(f"| stream backlog ({args.messages:,} messages, batch 500) | {drained:,.0f} | - | - |")
    print(f"| stream at {sent / elapsed:,.0f}/s (produce to output) | {sent / elapsed:,.0f} | "
          f"{np.percentile(latency, 50):.0f} | {np.percentile(latency, 99):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
