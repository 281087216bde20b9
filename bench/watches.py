"""Watched folders: how long a dropped file takes to be done, and how a backlog drains.

    .venv/bin/python -m bench.watches [--nodes 3] [--backlog 500] [--large 20]

Prints a table, each row a drop into a watched folder of a real fleet (`modelfleet up`, default
settings but the listing interval): one small file (its latency is mostly the settle time, the
proof that the file is whole); `--backlog` small files at once (they queue: at most
INFERRER_WATCH_MAX_RUNNING run); `--large` files of 50,000 rows at once. For each: seconds until
every file is done, files and rows per second, and the most files seen running at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, start_fleet

FEATURES = ["f0", "f1", "f2", "f3"]


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))).round(6), columns=FEATURES)
    return frame.assign(id=range(rows))


def _drop(fleet: RunningFleet, name: str, files: int, rows: int) -> tuple[float, int]:
    """Create watch `name`, drop `files` CSV files of `rows` rows, wait until all are done."""
    body = {"name": name, "input": f"{name}-in", "model": "bench", "output_location": f"{name}-out"}
    answer = httpx.post(f"{fleet.url}/api/v1/watches", json=body, headers=fleet.auth, timeout=30)
    assert answer.status_code == 201, answer.text
    text = _frame(rows, seed=1).to_csv(index=False).encode()
    folder = fleet.data_dir / "data" / f"{name}-in"
    started = time.perf_counter()
    for i in range(files):
        (folder / f"f{i:04d}.csv").write_bytes(text)
    most_running = 0
    while True:
        view = httpx.get(f"{fleet.url}/api/v1/watches/{name}", headers=fleet.auth, timeout=30).json()
        counts = view["counts"]
        most_running = max(most_running, counts["running"])
        if counts["done"] + counts["failed"] == files:
            assert counts["failed"] == 0, view
            return time.perf_counter() - started, most_running
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=500)
    parser.add_argument("--large", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=args.nodes, extra_args=("--no-example",),
                            env={"INFERRER_WATCH_INTERVAL_S": "10"})  # fmt: skip
        try:
            frame = _frame(10_000, seed=2)
            model = LogisticRegression().fit(frame[FEATURES], (frame["f0"] > frame["f3"]).astype(int))
            assert fleet.deploy("bench", sio.dumps(model)).status_code == 201
            print(f"{args.nodes} nodes; settle 2 s (INFERRER_WATCH_SETTLE_S), inotify, CSV in and out\n")
            print("| drop | files | rows each | seconds to all done | files/s | rows/s | most running |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for name, files, rows in (
                ("one", 1, 1_000),
                ("backlog", args.backlog, 1_000),
                ("large", args.large, 50_000),
            ):
                seconds, most = _drop(fleet, name, files, rows)
                print(f"| {name} | {files} | {rows:,} | {seconds:.1f} | {files / seconds:,.1f} | "
                      f"{files * rows / seconds:,.0f} | {most} |")  # fmt: skip
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
