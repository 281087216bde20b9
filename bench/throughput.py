"""Throughput and latency of the fleet against its limits and a peer, on this machine.

    .venv/bin/python -m bench.throughput [--seconds 5] [--concurrency 1 8 32 64] [--no-mlserver]
        [--runtime auto|sklearn|onnx] [--shared-stores]

LogisticRegression and a 100-tree RandomForest (depth 10) on 20 features, 1-row requests, load from
wrk (a separate process). Rows: in-process predict(); one modelhost directly (a bare FastAPI/uvicorn
process serving the model); the full chain (inferrer -> nginx -> nodes) with 1 and 3 nodes, gateway
batching on and off, the models deployed with --runtime (auto: compiled to ONNX where the graph
verifies; each deploy prints the runtime chosen); MLServer 1.7 + mlserver-sklearn with its defaults
and with adaptive batching.
With 3 nodes, the full chain is measured again once the job store holds a watch (its folder listed
and its files processed) and `--finished-jobs` finished jobs: background work must not cost the
hot path (`store: busy` rows). `--shared-stores`: the fleets keep the repository and the jobs in a
real PostgreSQL and SeaweedFS (the multi-host setup): the gateway's CPU per request must not move.
Prints a markdown table with req/s, p50, p99, errors and the CPU (cores) each process group used, and
writes it to bench/results.md. A benchmark, not a test: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from bench.loadgen import LoadResult, process_tree_cpu_s, run_wrk, wrk_available
from bench.mlserver_peer import MLServer, v2_body
from datafiles.locations import Storage
from deploy.ephemeral_fleet import RunningFleet, free_ports, start_fleet
from testbed.postgres_server import postgres_server
from testbed.s3_server import env_lines, s3_server

Row = dict[str, Any]


def make_models() -> tuple[dict[str, Any], list[float]]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 20))
    labels = (features[:, 0] + features[:, 1] * features[:, 2] > 0).astype(int)
    models = {
        "logreg": LogisticRegression(max_iter=500).fit(features, labels),
        "rf": RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0).fit(features, labels),
    }
    return models, features[0].tolist()


def in_process(model: Any, row: list[float], seconds: float) -> LoadResult:
    x = np.asarray([row])
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        model.predict(x)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    total = sum(latencies)
    p99 = latencies[int(len(latencies) * 0.99)]
    return LoadResult(
        len(latencies) / total, latencies[len(latencies) // 2] * 1000, p99 * 1000, 0, len(latencies)
    )


def measure(
    rows: list[Row], setup: str, model: str, url: str, body: bytes, groups: dict[str, list[int]],
    concurrencies: list[int], seconds: float, authorization: str = "",
) -> None:  # fmt: skip
    for concurrency in concurrencies:
        run_wrk(url, body, concurrency, 1, authorization)  # warm up connections, batch lanes, caches
        before = {g: process_tree_cpu_s(p) for g, p in groups.items()}
        result = run_wrk(url, body, concurrency, seconds, authorization)
        cpu = {g: (process_tree_cpu_s(p) - before[g]) / seconds for g, p in groups.items()}
        rows.append({"setup": setup, "model": model, "c": concurrency, "result": result, "cpu": cpu})
        print(_line(rows[-1]), flush=True)


def fleet_groups(fleet: RunningFleet, nodes: int) -> dict[str, list[int]]:
    return {
        "inferrer": [fleet.pid("inferrer")],
        "nodes": [fleet.pid(f"modelhost-{i}") for i in range(1, nodes + 1)],
        "nginx": [fleet.pid("nginx")],
    }


def run_fleet(
    rows: list[Row], models: dict[str, Any], row: list[float], nodes: int, args: argparse.Namespace
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(
            Path(tmp),
            nodes=nodes,
            extra_args=("--no-example", "--inferrer-workers", str(args.inferrer_workers)),
            env_lines=args.store_lines,
        )
        try:
            deployed_sha256 = {}
            for name, model in models.items():
                for batching in ("true", "false"):
                    deployed = fleet.deploy(
                        f"{name}-{batching}",
                        sio.dumps(model),
                        timeout_s=120,
                        batching=batching,
                        runtime=args.runtime,
                    )
                    deployed.raise_for_status()
                    view = httpx.get(
                        f"{fleet.url}/api/v1/models/{name}-{batching}", headers=fleet.auth
                    ).json()
                    deployed_sha256[f"{name}-{batching}"] = view["versions"][0]["served_sha256"]
                    choice = deployed.json()["runtime"]
                    print(f"# {name}-{batching} runs on {choice['runtime']}: {choice['reason']}", flush=True)
            groups = fleet_groups(fleet, nodes)
            body = orjson.dumps({"instances": [row]})
            for name in models:
                if nodes == 1:
                    node_url = f"http://127.0.0.1:{fleet.node_ports[0]}/api/v1/models/{name}-true/predict"
                    sha256 = deployed_sha256[f"{name}-true"]
                    node_body = orjson.dumps({"version": "1", "sha256": sha256, "instances": [row]})
                    node_only = {"node": groups["nodes"]}
                    measure(rows, "one modelhost, direct", name, node_url, node_body, node_only,
                            args.concurrency, args.seconds, f"Bearer {fleet.token}")  # fmt: skip
                for batching in ("true", "false"):
                    plural = "s" if nodes > 1 else ""
                    switch = "on" if batching == "true" else "off"
                    setup = f"full chain, {nodes} node{plural}, batching {switch}"
                    url = f"{fleet.url}/api/v1/models/{name}-{batching}/predict"
                    measure(rows, setup, name, url, body, groups, args.concurrency, args.seconds)
            if nodes > 1:
                fill_store(fleet, row, args.finished_jobs)
                for name in models:
                    setup = f"full chain, {nodes} nodes, batching on, store: busy"
                    url = f"{fleet.url}/api/v1/models/{name}-true/predict"
                    measure(rows, setup, name, url, body, groups, args.concurrency, args.seconds)
        finally:
            fleet.stop()


def fill_store(fleet: RunningFleet, row: list[float], finished_jobs: int) -> None:
    """A watch whose files were processed, and `finished_jobs` finished inline jobs, then idle."""
    folder = fleet.data_dir / "data" / "bench-in"
    folder.mkdir(parents=True, exist_ok=True)
    watch = {"name": "bench", "input": "bench-in", "model": "logreg-true", "output_location": "bench-out"}
    httpx.post(f"{fleet.url}/api/v1/watches", json=watch, headers=fleet.auth, timeout=30).raise_for_status()
    header = ",".join(f"x{i}" for i in range(len(row)))
    for i in range(5):
        (folder / f"f{i}.csv").write_text(f"{header}\n" + ",".join(map(str, row)) + "\n")
    ids = []
    for _ in range(finished_jobs):
        job = {"model": "logreg-true", "instances": [row] * 10}
        answer = httpx.post(f"{fleet.url}/api/v1/jobs", json=job, headers=fleet.auth, timeout=30)
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    for job_id in ids:
        assert fleet.finished_job(job_id)["status"] == "succeeded"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = httpx.get(f"{fleet.url}/api/v1/watches/bench", headers=fleet.auth, timeout=30).json()
        if view["counts"]["done"] + view["counts"]["failed"] == 5:
            break
        time.sleep(0.2)
    print(f"# store: a watch ({view['counts']}) and {finished_jobs} finished jobs", flush=True)


def run_mlserver(rows: list[Row], models: dict[str, Any], row: list[float], args: argparse.Namespace) -> None:
    for batching in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            server = MLServer(Path(tmp), models, free_ports(3), batching)
            try:
                setup = "MLServer 1.7, adaptive batching (32, 5 ms)" if batching else "MLServer 1.7, defaults"
                for name in models:
                    url = f"{server.url}/v2/models/{name}/infer"
                    measure(rows, setup, name, url, v2_body(row), {"mlserver": [server.process.pid]},
                            args.concurrency, args.seconds)  # fmt: skip
            finally:
                server.stop()


def _line(entry: Row) -> str:
    r: LoadResult = entry["result"]
    cpu = ", ".join(f"{g} {c:.2f}" for g, c in entry["cpu"].items())
    # The gateway's CPU per request (the budget: 0.3 ms): its cores over requests a second.
    gateway = entry["cpu"].get("inferrer")
    per_request = f"{gateway / r.rps * 1000:.3f}" if gateway is not None and r.rps else ""
    return (
        f"| {entry['setup']} | {entry['model']} | {entry['c']} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
        f"{r.p99_ms:.2f} | {r.errors} | {cpu} | {per_request} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--inferrer-workers", type=int, default=1)
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--runtime", choices=["auto", "sklearn", "onnx"], default="auto", help="the fleet's")
    parser.add_argument("--finished-jobs", type=int, default=200, help="in the store for the busy rows")
    parser.add_argument("--out", type=Path, default=Path("bench/results.md"))
    parser.add_argument(
        "--shared-stores", action="store_true", help="the repository and jobs in PostgreSQL and SeaweedFS"
    )
    args = parser.parse_args()
    if not wrk_available():
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    with contextlib.ExitStack() as stores:
        args.store_lines = stores.enter_context(shared_stores()) if args.shared_stores else ""
        run(args)


@contextlib.contextmanager
def shared_stores() -> Iterator[str]:
    """A real PostgreSQL and SeaweedFS on loopback, as the .env lines that make a fleet use them."""
    with postgres_server() as database, s3_server() as s3:
        storage = Storage(Path("."), s3)
        storage.filesystem(storage.location("s3://bench-models/x")).mkdir("bench-models")
        yield (
            f"INFERRER_REPOSITORY_DB_URL={database}\nINFERRER_JOBS_DB_URL={database}\n"
            f"INFERRER_REPOSITORY_ARTIFACTS_URL=s3://bench-models/models\n{env_lines(s3)}"
        )


def run(args: argparse.Namespace) -> None:
    models, row = make_models()
    rows: list[Row] = []
    header = (
        "| setup | model | c | req/s | p50 ms | p99 ms | errors | CPU (cores) | gateway CPU ms/req |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    print(header)
    for name, model in models.items():
        result = in_process(model, row, args.seconds)
        rows.append({"setup": "in-process predict()", "model": name, "c": 1, "result": result, "cpu": {}})
        print(_line(rows[-1]), flush=True)
    run_fleet(rows, models, row, 1, args)
    run_fleet(rows, models, row, 3, args)
    if not args.no_mlserver:
        run_mlserver(rows, models, row, args)
    text = "\n".join(
        [
            f"# bench.throughput on {platform.node()} ({platform.processor() or platform.machine()}), "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {args.seconds:.0f} s per point, "
            f"inferrer workers {args.inferrer_workers}, fleet runtime={args.runtime}"
            + (", shared stores (PostgreSQL, SeaweedFS)" if args.shared_stores else ""),
            "",
            header,
            *(_line(r) for r in rows),
            "",
        ]
    )
    args.out.write_text(text)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
