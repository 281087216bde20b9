"""Batch job throughput, and what a running job costs online traffic.

    .venv/bin/python -m bench.batch_jobs [--rows 1000000] [--nodes 3] [--online-seconds 4] [--pairs 5]

Prints a table: rows per second of a CSV and a JSON-lines job through the fleet, with the model
served by scikit-learn and compiled to ONNX (runtime=auto), beside the limit (one process reading
the same file, predicting and writing it with pandas); online p50/p99 at concurrency 16
without a job and while one runs; and the peak memory (VmHWM) of every service, which stays bounded
whatever the file's size (nodes read a partition at a time, the gateway never reads the rows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Mapping
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


def _write_rows(data: Path, rows: int) -> LogisticRegression:
    """rows.jsonl and rows.csv: the same rows (an id and 4 features), and a model fitted on them."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))).round(6), columns=FEATURES)
    labels = (frame["f0"] - frame["f3"] > 0).astype(int)
    frame["id"] = range(rows)
    with (data / "rows.jsonl").open("wb") as out:
        for start in range(0, rows, 100_000):
            chunk = frame.iloc[start : start + 100_000]
            out.write(b"".join(orjson.dumps(r) + b"\n" for r in chunk.to_dict("records")))
    frame.to_csv(data / "rows.csv", index=False)
    return LogisticRegression().fit(frame[FEATURES].iloc[:10_000], labels.iloc[:10_000])


def _first_rows(data: Path, nodes: int) -> dict[str, object]:
    """A job on the first rows of rows.csv, in 3 partitions a node: as small as a job can be and
    still start every node's batch worker."""
    with (data / "rows.csv").open("rb") as source:
        head = b"".join(source.readline() for _ in range(3 * nodes * 200 + 1))
    (data / "first.csv").write_bytes(head)
    return {"input": "first.csv", "partition_bytes": max(4096, len(head) // (3 * nodes))}


def _alone(path: Path, model: LogisticRegression, out: Path) -> float:
    """The limit: one process reads the file, predicts and writes it back with pandas."""
    started = time.perf_counter()
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        frame["prediction"] = model.predict(frame[FEATURES])
        frame.to_csv(out, index=False)
    else:
        frame = pd.read_json(path, lines=True)
        frame["prediction"] = model.predict(frame[FEATURES])
        frame.to_json(out, orient="records", lines=True)
    return time.perf_counter() - started


def _run_job(fleet: RunningFleet, body: Mapping[str, object]) -> tuple[str, float]:
    started = time.perf_counter()
    job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=120).json()
    view = fleet.finished_job(job["id"], timeout_s=3600)
    assert view["status"] == "succeeded", view
    return job["id"], time.perf_counter() - started


def _peak_mib(pid: int, children: bool = True) -> float:
    """Peak RSS (VmHWM) of a process, with its children's (a node's batch worker, nginx's workers)."""
    total = 0
    for member in process_tree([pid]) if children else [pid]:
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
    parser.add_argument("--partition-mib", type=float, default=8.0)
    parser.add_argument("--online-seconds", type=int, default=4, help="each window of online load")
    parser.add_argument("--pairs", type=int, default=5, help="windows without and with a job")
    args = parser.parse_args()
    throughput: list[tuple[str, float]] = []
    cold_starts: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=args.nodes, extra_args=("--no-example",))
        try:
            data = fleet.data_dir / "data"
            data.mkdir(parents=True, exist_ok=True)
            model = _write_rows(data, args.rows)
            runtimes = {}
            for runtime in ("sklearn", "auto"):
                deployed = fleet.deploy(f"scores-{runtime}", sio.dumps(model), runtime=runtime)
                assert deployed.status_code == 201, deployed.text
                runtimes[runtime] = deployed.json()["runtime"]["runtime"]
            # The nodes' batch workers start with a node's first partition (and stop after a minute
            # without one): a small job of a few partitions per node and model starts them, timed
            # on its own, so that the rows/s below are the workers' and not their start.
            first = _first_rows(data, args.nodes)
            for runtime in runtimes:
                _, start_s = _run_job(fleet, {"model": f"scores-{runtime}", **first})
                cold_starts.append((runtime, start_s))
            for name in ("rows.csv", "rows.jsonl"):
                alone_s = _alone(data / name, model, Path(tmp) / f"alone-{name}")
                throughput.append((f"{name}: one process with pandas (read, predict, write)", alone_s))
                for runtime, served in runtimes.items():
                    body = {
                        "model": f"scores-{runtime}",
                        "input": name,
                        "partition_bytes": int(args.partition_mib * 2**20),
                    }
                    _, job_s = _run_job(fleet, body)
                    throughput.append((f"{name}: the fleet's job, runtime={runtime} ({served})", job_s))

            # Online load without a job and then starting with one, so that both p99s stand for
            # the same kind of window; several pairs, as one window's p99 swings by a third from
            # run to run. The table says whether the job ran for all of the window.
            window_s = float(args.online_seconds)
            online_url = f"{fleet.url}/api/v1/models/scores-auto/predict"
            online_body = orjson.dumps({"records": [dict.fromkeys(FEATURES, 0.5)]})
            body = {
                "model": "scores-auto",
                "input": "rows.jsonl",
                "partition_bytes": int(args.partition_mib * 2**20),
            }
            pairs: list[tuple[LoadResult, LoadResult, float]] = []
            for _ in range(args.pairs):
                quiet = run_wrk(online_url, online_body, 16, window_s)
                during: list[LoadResult] = []
                load = threading.Thread(
                    target=lambda out=during: out.append(run_wrk(online_url, online_body, 16, window_s))
                )
                started = time.perf_counter()
                job = httpx.post(
                    f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=120
                ).json()
                load.start()
                assert fleet.finished_job(job["id"], timeout_s=3600)["status"] == "succeeded"
                busy_job_s = time.perf_counter() - started
                load.join()
                pairs.append((quiet, during[0], busy_job_s))
            peaks = {
                name: (_peak_mib(fleet.pid(name), children=False), _peak_mib(fleet.pid(name)))
                for name in ("inferrer", "nginx", *[f"modelhost-{i}" for i in range(1, args.nodes + 1)])
            }
        finally:
            fleet.stop()
    cores = os.cpu_count()
    print(f"\n{args.rows:,} rows (an id and {len(FEATURES)} features), {args.nodes} nodes, {cores} cores\n")
    for runtime, start_s in cold_starts:
        print(f"A first job of {3 * args.nodes} small partitions, runtime={runtime}: {start_s:.1f} s.")
    print("\n| what | seconds | rows/s |\n|---|---:|---:|")
    for label, seconds in throughput:
        print(f"| {label} | {seconds:.1f} | {args.rows / seconds:,.0f} |")
    print(
        f"\n| online predictions, c=16, {window_s:.0f} s | req/s | p50 ms | p99 ms | p99 / p99 without a job "
        "| the job's rows/s | the job ran all the window |\n|---|---:|---:|---:|---:|---:|---|"
    )
    for alone, beside, busy_s in pairs:
        print(f"| no job running | {alone.rps:,.0f} | {alone.p50_ms:.1f} | {alone.p99_ms:.1f} | | | |")
        print(
            f"| a JSON-lines job running (auto) | {beside.rps:,.0f} | {beside.p50_ms:.1f} | "
            f"{beside.p99_ms:.1f} | {beside.p99_ms / alone.p99_ms:.2f} | {args.rows / busy_s:,.0f} | "
            f"{'yes' if busy_s >= window_s else 'no'} |"
        )
    quiet_p99 = statistics.median(alone.p99_ms for alone, _, _ in pairs)
    busy_p99 = statistics.median(beside.p99_ms for _, beside, _ in pairs)
    print(
        f"\nMedian p99: {quiet_p99:.1f} ms without a job, {busy_p99:.1f} ms with one "
        f"({busy_p99 / quiet_p99:.2f}x)."
    )
    print("\n| service | peak RSS MiB: the process | and its children (a node's batch worker) |")
    print("|---|---:|---:|")
    for name, (alone_mib, tree_mib) in peaks.items():
        print(f"| {name} | {alone_mib:.0f} | {tree_mib:.0f} |")


if __name__ == "__main__":
    main()
