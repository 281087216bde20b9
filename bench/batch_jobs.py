"""Batch job throughput, and what a running job costs online traffic.

    .venv/bin/python -m bench.batch_jobs [--rows 1000000] [--nodes 3] [--seconds 10]

Prints a table: rows per second of one JSON-lines job through the fleet beside the limit (one process
reading the same file, predicting and writing it with pandas); online p50/p99 at concurrency 16
without a job and while one runs; and the peak memory (VmHWM) of every service, which stays bounded
whatever the file's size (nodes read a partition at a time, the gateway never reads the rows).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from bench.loadgen import LoadResult, process_tree, run_wrk
from deploy.ephemeral_fleet import RunningFleet, start_fleet

FEATURES = ["f0", "f1", "f2", "f3"]


def _write_rows(path: Path, rows: int) -> LogisticRegression:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))).round(6), columns=FEATURES)
    labels = (frame["f0"] - frame["f3"] > 0).astype(int)
    with path.open("wb") as out:
        for start in range(0, rows, 100_000):
            chunk = frame.iloc[start : start + 100_000].assign(id=range(start, min(start + 100_000, rows)))
            out.write(b"".join(orjson.dumps(r) + b"\n" for r in chunk.to_dict("records")))
    return LogisticRegression().fit(frame.iloc[:10_000], labels.iloc[:10_000])


def _alone(path: Path, model: LogisticRegression, out: Path) -> float:
    """The limit: one process reads the file, predicts and writes it back with pandas."""
    started = time.perf_counter()
    frame = pd.read_json(path, lines=True)
    frame["prediction"] = model.predict(frame[FEATURES])
    frame.to_json(out, orient="records", lines=True)
    return time.perf_counter() - started


def _run_job(fleet: RunningFleet, body: dict[str, object]) -> tuple[str, float]:
    started = time.perf_counter()
    job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=120).json()
    view = fleet.finished_job(job["id"], timeout_s=3600)
    assert view["status"] == "succeeded", view
    return job["id"], time.perf_counter() - started


def _peak_mib(pid: int) -> float:
    total = 0
    for member in process_tree([pid]):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        except (OSError, StopIteration):
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="online load without a job")
    parser.add_argument("--partition-mib", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=args.nodes, extra_args=("--no-example",))
        try:
            data = fleet.data_dir / "data"
            data.mkdir(parents=True, exist_ok=True)
            model = _write_rows(data / "rows.jsonl", args.rows)
            size_mib = (data / "rows.jsonl").stat().st_size / 2**20
            assert fleet.deploy("scores", sio.dumps(model)).status_code == 201
            alone_s = _alone(data / "rows.jsonl", model, Path(tmp) / "alone.jsonl")
            body = {
                "model": "scores",
                "input": "rows.jsonl",
                "partition_bytes": int(args.partition_mib * 2**20),
            }
            _, job_s = _run_job(fleet, body)

            online_url = f"{fleet.url}/api/v1/models/scores/predict"
            online_body = orjson.dumps({"records": [dict.fromkeys(FEATURES, 0.5)]})
            quiet = run_wrk(online_url, online_body, 16, args.seconds)
            during: list[LoadResult] = []
            load = threading.Thread(
                target=lambda: during.append(run_wrk(online_url, online_body, 16, args.seconds))
            )
            load.start()
            _, busy_job_s = _run_job(fleet, body)
            load.join()
            peaks = {
                name: _peak_mib(fleet.pid(name))
                for name in ("inferrer", "nginx", *[f"modelhost-{i}" for i in range(1, args.nodes + 1)])
            }
        finally:
            fleet.stop()
    cores = os.cpu_count()
    print(f"\n{args.rows:,} rows ({size_mib:.0f} MiB of JSON lines), {args.nodes} nodes, {cores} cores\n")
    print("| what | seconds | rows/s |\n|---|---:|---:|")
    print(f"| one process with pandas (read, predict, write) | {alone_s:.1f} | {args.rows / alone_s:,.0f} |")
    print(f"| the fleet's job, alone | {job_s:.1f} | {args.rows / job_s:,.0f} |")
    print(f"| the fleet's job, beside online load | {busy_job_s:.1f} | {args.rows / busy_job_s:,.0f} |")
    print("\n| online predictions (c=16) | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for label, result in (("no job running", quiet), ("a job running", during[0])):
        print(f"| {label} | {result.rps:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} |")
    print("\n| process | peak RSS MiB |\n|---|---:|")
    for name, peak in peaks.items():
        print(f"| {name} | {peak:.0f} |")


if __name__ == "__main__":
    main()
