"""The bench's RandomForest through the full chain (or MLServer) at one concurrency, with the CPU of
every process group, the rows per upstream call the gateway batcher sent, the nodes' predict time,
and optionally py-spy profiles of a node and the inferrer. Traffic goes to 127.0.0.1 only.

    .venv/bin/python -m bench.forest_fleet [--nodes 3] [--concurrency 32] [--seconds 15]
        [--env INFERRER_BATCH_MAX_ROWS=64 ...] [--profile DIR] [--mlserver]

Each configuration is one fleet (or one MLServer) started, measured and stopped by PID (the
harness's own start/stop). CPU: /proc/<pid>/stat deltas of each group's process tree (inferrer,
nodes, nginx, MLServer), wrk (RUSAGE_CHILDREN delta) and the whole machine (/proc/stat).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson
import skops.io as sio

from bench.loadgen import process_tree_cpu_s, run_wrk
from bench.mlserver_peer import MLServer, v2_body
from bench.throughput import make_models
from deploy.ephemeral_fleet import free_ports, start_fleet

PY_SPY = Path(".venv/bin/py-spy")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def wrk_children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def metric_sums(text: str, name: str) -> dict[str, float]:
    """{'sum': .., 'count': .., 'le=1': ..} summed over label sets for one histogram."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(name + "_sum"):
            out["sum"] = out.get("sum", 0) + value
        elif line.startswith(name + "_count"):
            out["count"] = out.get("count", 0) + value
        elif line.startswith(name + "_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                out[f"le={le[1]}"] = out.get(f"le={le[1]}", 0) + value
    return out


def scrape(urls: list[str], name: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for url in urls:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            continue
        for k, v in metric_sums(text, name).items():
            total[k] = total.get(k, 0) + v
    return total


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


PY_SPY_EXTRA: list[str] = []


def start_profiles(pids: dict[str, int], seconds: float, out: Path | None) -> list[subprocess.Popen[bytes]]:
    if out is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for label, pid in pids.items():
        for fmt, ext in (("raw", "txt"), ("speedscope", "speedscope.json")):
            if fmt == "speedscope":
                continue  # one sampler per process: two would double the sampling load
            procs.append(
                subprocess.Popen(
                    [
                        str(PY_SPY),
                        "record",
                        "-p",
                        str(pid),
                        "--subprocesses",
                        "-r",
                        "50",
                        "-d",
                        str(max(1, round(seconds - 1))),
                        "--format",
                        fmt,
                        "-o",
                        str(out / f"{label}.{ext}"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return procs


def measure(
    url: str, body: bytes, groups: dict[str, list[int]], concurrency: int, seconds: float,
    authorization: str = "", metric_urls: list[str] | None = None, node_metric_urls: list[str] | None = None,
    profile: Path | None = None, profile_pids: dict[str, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    run_wrk(url, body, concurrency, 2, authorization)  # warm-up
    rows_before = scrape(metric_urls or [], "modelfleet_inferrer_batch_rows")
    pred_before = scrape(node_metric_urls or [], "modelfleet_modelhost_predict_duration_seconds")
    cpu_before = {g: process_tree_cpu_s(p) for g, p in groups.items()}
    wrk_before = wrk_children_cpu_s()
    busy_before, total_before = machine_busy_s()
    spies = start_profiles(profile_pids or {}, seconds, profile)
    result = run_wrk(url, body, concurrency, seconds, authorization)
    busy_after, total_after = machine_busy_s()
    wrk_cpu = (wrk_children_cpu_s() - wrk_before) / seconds
    cpu = {g: (process_tree_cpu_s(p) - cpu_before[g]) / seconds for g, p in groups.items()}
    for spy in spies:
        spy.wait(60)
    rows = delta(scrape(metric_urls or [], "modelfleet_inferrer_batch_rows"), rows_before)
    pred = delta(scrape(node_metric_urls or [], "modelfleet_modelhost_predict_duration_seconds"), pred_before)
    cores = (total_after - total_before) / seconds
    cpu["wrk"] = wrk_cpu
    cpu["machine"] = (busy_after - busy_before) / seconds
    entry = {"result": result, "cpu": cpu, "cores": cores, "rows": rows, "pred": pred}
    print(line(entry), flush=True)
    return entry


def line(entry: dict[str, Any]) -> str:
    r = entry["result"]
    cpu = ", ".join(f"{g} {c:.2f}" for g, c in entry["cpu"].items())
    rows, pred = entry["rows"], entry["pred"]
    calls = rows.get("count", 0)
    mean_rows = rows["sum"] / calls if calls else float("nan")
    hist = ""
    if calls:
        cum = [(k[3:], v) for k, v in rows.items() if k.startswith("le=")]
        cum.sort(key=lambda kv: float(kv[0]))
        prev = 0.0
        parts = []
        for le, v in cum:
            if v - prev > 0:
                parts.append(f"≤{le}: {100 * (v - prev) / calls:.0f}%")
            prev = v
        hist = " ".join(parts)
    pcalls = pred.get("count", 0)
    pms = 1000 * pred["sum"] / pcalls if pcalls else float("nan")
    calls_per_s = calls / max(r.requests, 1) * r.rps
    return (
        f"| {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {calls_per_s:,.0f} "
        f"| {mean_rows:.1f} | {pms:.2f} | {cpu} | {hist} |"
    )


def run_fleet(args: argparse.Namespace) -> None:
    models, row = make_models()
    env = dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=args.nodes, extra_args=("--no-example",), env=env)
        try:
            fleet.deploy(
                "rf-true", sio.dumps(models["rf"]), timeout_s=120, batching="true"
            ).raise_for_status()
            groups = {
                "inferrer": [fleet.pid("inferrer")],
                "nodes": [fleet.pid(f"modelhost-{i}") for i in range(1, args.nodes + 1)],
                "nginx": [fleet.pid("nginx")],
            }
            body = orjson.dumps({"instances": [row]})
            url = f"{fleet.url}/api/v1/models/rf-true/predict"
            node_metrics = [f"http://127.0.0.1:{p}/metrics" for p in fleet.node_ports]
            settings = env or "defaults"
            print(f"fleet {args.nodes} nodes, env {settings}, c={args.concurrency}, {args.seconds:.0f} s")
            print(
                "| req/s | p50 ms | p99 ms | errors | upstream calls/s | rows/call "
                "| node predict ms/call | CPU (cores) | rows/call histogram |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for c in args.concurrency:
                pids = {"inferrer": fleet.pid("inferrer"), "node1": fleet.pid("modelhost-1")}
                measure(url, body, groups, c, args.seconds, metric_urls=[f"{fleet.url}/metrics"],
                        node_metric_urls=node_metrics, profile=args.profile, profile_pids=pids)  # fmt: skip
        finally:
            fleet.stop()


def run_mlserver(args: argparse.Namespace) -> None:
    models, row = make_models()
    with tempfile.TemporaryDirectory() as tmp:
        server = MLServer(Path(tmp), {"rf": models["rf"]}, free_ports(3), True)
        try:
            print(f"MLServer adaptive batching (32, 5 ms), c={args.concurrency}, {args.seconds:.0f} s")
            for c in args.concurrency:
                pid = server.process.pid
                measure(f"{server.url}/v2/models/rf/infer", v2_body(row), {"mlserver": [pid]},
                        c, args.seconds, profile=args.profile, profile_pids={"mlserver": pid})  # fmt: skip
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--env", nargs="*", default=[])
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--mlserver", action="store_true")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil: only the thread holding the GIL")
    args = parser.parse_args()
    if args.gil:
        PY_SPY_EXTRA.append("--gil")
    if args.mlserver:
        run_mlserver(args)
    else:
        run_fleet(args)


if __name__ == "__main__":
    main()
