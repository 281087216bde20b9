"""What tracing costs on the chain (client -> gateway -> nginx -> node -> model): predictions per
second and latency with tracing off (no endpoint), on with 1 % sampling, and on with 100 %.

    .venv/bin/python -m bench.tracing [--seconds 10] [--rounds 2]

A real fleet (`modelfleet up`: two nodes, one gateway process) per setting, started in turn, a
logistic regression over 6 features, one row per request, wrk with 32 connections. With tracing on,
the spans go to an OTLP receiver in this process that counts their bytes and drops them, undecoded
(the KiB exported are printed). Each round starts the three fleets again: the spread between rounds
is the noise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import orjson
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from bench.loadgen import LoadResult, run_wrk
from deploy.ephemeral_fleet import start_fleet
from testbed.otlp_receiver import otlp_receiver

FEATURES = 6
SETTINGS = (("off", None), ("1 %", 0.01), ("100 %", 1.0))


def _run(model: bytes, body: bytes, ratio: float | None, endpoint: str, seconds: float) -> LoadResult:
    env = (
        ""
        if ratio is None
        else f"MODELFLEET_TRACING_OTLP_ENDPOINT={endpoint}\nMODELFLEET_TRACING_SAMPLE_RATIO={ratio}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=2, env_lines=env, extra_args=("--no-example",))
        try:
            assert fleet.deploy("bench", model).status_code == 201
            url = f"{fleet.url}/api/v1/models/bench/predict"
            run_wrk(url, body, 32, 3)  # warm: connections, the batcher's lanes, the model loaded
            return run_wrk(url, body, 32, seconds)
        finally:
            fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    features = np.random.default_rng(0).normal(size=(2_000, FEATURES))
    model = sio.dumps(LogisticRegression().fit(features, (features[:, 0] > 0).astype(int)))
    body = orjson.dumps({"instances": [features[0].tolist()]})
    rows = []
    with otlp_receiver(keep=False) as receiver:
        for round_ in range(1, args.rounds + 1):
            for label, ratio in SETTINGS:
                before = receiver.received_bytes
                result = _run(model, body, ratio, receiver.url, args.seconds)
                rows.append((round_, label, result, (receiver.received_bytes - before) // 1024))
    print("| round | tracing | req/s | p50 ms | p99 ms | KiB exported |")
    print("|---:|---|---:|---:|---:|---:|")
    for round_, label, result, spans in rows:
        figures = f"{result.rps:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f}"
        print(f"| {round_} | {label} | {figures} | {spans:,} |")


if __name__ == "__main__":
    main()
