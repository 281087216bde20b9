"""Soak: a fleet (`modelfleet up`, the .env's defaults) under steady load for a while (default 30
minutes), with deploys, rollbacks and deletes running beside it. Every minute it prints the RSS and
open file descriptors of every service (each with its worker processes), the disk used by logs,
repository, node caches and Prometheus, and the errors of the load and of the management calls. At
the end, each series' growth per hour (least squares over the minutes after the warm-up) and a
verdict: flat, or growing.

    .venv/bin/python -m bench.soak [--minutes 30] [--nodes 3] [--concurrency 16] [--json FILE]

The load is wrk (one thread, kept-alive connections), one run per minute; the management loop
deploys a new version of one model every few seconds (five different artifacts in turn), rolls it
back every third time, and deletes and re-deploys a second model every seventh.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from bench.loadgen import process_tree, run_wrk
from deploy.ephemeral_fleet import RunningFleet, start_fleet
from deploy.example import EXAMPLE_ROW

# Growth allowed over a day before a series counts as growing: the larger of these and 10% of its mean.
_DAILY_TOLERANCE = {"rss_mib": 16.0, "fds": 16.0, "disk_mib": 32.0}


@dataclass
class Management:
    """Deploys, rollbacks and deletes beside the load, until stopped; counts what failed."""

    fleet: RunningFleet
    every_s: float
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        artifacts = [_artifact(seed) for seed in range(5)]
        with httpx.Client(base_url=self.fleet.url, headers=self.fleet.auth, timeout=120) as client:
            for step in itertools.count(1):
                if self.stop.wait(self.every_s):
                    return
                self._call(client.post, "/api/v1/models", {201}, files=_upload(artifacts[step % 5]),
                           data={"name": "soak"})  # fmt: skip
                if step % 3 == 0:
                    self._call(client.post, "/api/v1/models/soak/rollback", {200})
                if step % 7 == 0:
                    self._call(client.delete, "/api/v1/models/soak-b", {200, 404})
                    self._call(client.post, "/api/v1/models", {201}, files=_upload(artifacts[0]),
                               data={"name": "soak-b"})  # fmt: skip

    def _call(self, method: object, path: str, expected: set[int], **kwargs: object) -> None:
        self.calls += 1
        try:
            status = method(path, **kwargs).status_code  # type: ignore[operator]
        except httpx.HTTPError as exc:
            self.errors.append(f"{path}: {exc!r}")
            return
        if status not in expected:
            self.errors.append(f"{path}: {status}")


def _artifact(seed: int) -> bytes:
    features = np.random.default_rng(seed).normal(size=(200, 4))
    return sio.dumps(LogisticRegression().fit(features, (features[:, seed % 4] > 0).astype(int)))


def _upload(data: bytes) -> dict[str, tuple[str, bytes]]:
    return {"file": ("model.skops", data)}


def _services(fleet: RunningFleet) -> dict[str, int]:
    pids = {p.stem: int(p.read_text()) for p in (fleet.data_dir / "run" / "pids").glob("*.pid")}
    return {"launcher": fleet.process.pid, **dict(sorted(pids.items()))}


def _rss_mib_and_fds(pid: int, with_descendants: bool) -> tuple[float, int]:
    rss_kib, fds = 0, 0
    for member in process_tree([pid]) if with_descendants else {pid}:
        try:
            status = Path(f"/proc/{member}/status").read_text()
            rss_kib += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except (OSError, StopIteration, ValueError):
            continue  # a worker that just exited
    return rss_kib / 1024, fds


def _disk_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total / 2**20


def sample(fleet: RunningFleet) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, pid in _services(fleet).items():
        # a service with its worker processes; the launcher alone (every service descends from it)
        usage = _rss_mib_and_fds(pid, with_descendants=name != "launcher")
        values[f"rss_mib {name}"], values[f"fds {name}"] = usage
    for part in ("run/logs", "repository", "cache", "prometheus"):
        values[f"disk_mib {part}"] = _disk_mib(fleet.data_dir / part)
    return values


def slope_per_hour(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope, per hour."""
    if len(minutes) < 2:
        return 0.0
    return float(np.polyfit(minutes, values, 1)[0]) * 60


def verdict(series: str, values: list[float], per_hour: float) -> str:
    """Flat unless it grows by more than its tolerance in a day at this slope (shrinking is flat)."""
    if series == "disk_mib prometheus":
        return "grows until PROMETHEUS_RETENTION_SIZE/_TIME"
    if series == "rss_mib prometheus":
        return "grows with its head block until compacted (every 2 h)"
    kind = series.split()[0]
    allowed = max(_DAILY_TOLERANCE[kind], 0.1 * float(np.mean(values)))
    return "flat" if per_hour * 24 <= allowed else "GROWING"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--manage-every", type=float, default=3.0, help="seconds between management steps")
    parser.add_argument("--warmup", type=int, default=10, help="minutes left out of the slopes")
    # Smaller than the .env's default (10 MiB x 3), so that every log reaches its bound in the warm-up.
    parser.add_argument("--log-max-mib", type=int, default=2, help="LOG_MAX_BYTES, in MiB")
    parser.add_argument("--log-max-files", type=int, default=3, help="LOG_MAX_FILES")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    # Stopped early (SIGTERM, or SIGINT where a background shell ignores it): stop the fleet too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))

    with tempfile.TemporaryDirectory() as tmp:
        limits = f"LOG_MAX_BYTES={args.log_max_mib * 2**20}\nLOG_MAX_FILES={args.log_max_files}\n"
        fleet = start_fleet(Path(tmp), nodes=args.nodes, env_lines=limits)
        management = Management(fleet, args.manage_every)
        manager = threading.Thread(target=management.run)
        manager.start()
        rows: list[dict[str, float]] = []
        try:
            url = f"{fleet.url}/api/v1/models/iris/predict"
            body = orjson.dumps({"instances": [EXAMPLE_ROW]})
            for minute in range(1, args.minutes + 1):
                load = run_wrk(url, body, args.concurrency, 60)
                row = {"minute": minute, "rps": load.rps, "errors": load.errors, **sample(fleet)}
                row |= {"management_calls": management.calls, "management_errors": len(management.errors)}
                rows.append(row)
                _print_minute(row)
        finally:
            management.stop.set()
            manager.join()
            fleet.stop()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    services = sum(1 for k in rows[0] if k.startswith("fds ")) - 1  # but the launcher
    print(f"\nlogs bound: {services} services x {args.log_max_files} files x {args.log_max_mib} MiB "
          f"= {services * args.log_max_files * args.log_max_mib} MiB")  # fmt: skip
    _print_summary(rows, args.warmup)
    if management.errors:
        print("management errors:", *management.errors[:20], sep="\n  ")


def _print_minute(row: dict[str, float]) -> None:
    def group(kind: str, fmt: str) -> str:
        return "  ".join(f"{k.split()[1]} {v:{fmt}}" for k, v in row.items() if k.startswith(kind + " "))

    print(
        f"minute {row['minute']:.0f}: {row['rps']:,.0f} req/s, {row['errors']:.0f} errors; management "
        f"{row['management_calls']:.0f} calls, {row['management_errors']:.0f} errors\n"
        f"  RSS MiB   {group('rss_mib', '.1f')}\n  fds       {group('fds', '.0f')}\n"
        f"  disk MiB  {group('disk_mib', '.2f')}",
        flush=True,
    )


def _print_summary(rows: list[dict[str, float]], warmup: int) -> None:
    steady = [r for r in rows if r["minute"] > warmup] or rows
    minutes = [r["minute"] for r in steady]
    total_errors = sum(r["errors"] for r in rows)
    print(f"\n{len(rows)} minutes, {total_errors:.0f} load errors, {rows[-1]['management_calls']:.0f} "
          f"management calls with {rows[-1]['management_errors']:.0f} errors; slopes over minutes "
          f"{minutes[0]:.0f}-{minutes[-1]:.0f}\n")  # fmt: skip
    print("| series | first | last | slope per hour | verdict |\n|---|---:|---:|---:|---|")
    for series in (k for k in rows[0] if k.split()[0] in _DAILY_TOLERANCE):
        values = [r[series] for r in steady]
        per_hour = slope_per_hour(minutes, values)
        print(f"| {series} | {rows[0][series]:.1f} | {rows[-1][series]:.1f} | {per_hour:+.2f} | "
              f"{verdict(series, values, per_hour)} |")  # fmt: skip


if __name__ == "__main__":
    main()
