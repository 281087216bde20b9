"""The fleet across hosts (network namespaces, testbed/spread_fleet.py; root only): the same load
through one gateway host, and through two gateway hosts behind the front host; then the same through
the front with TLS on every hop. One table, one run:

    .venv/bin/python -m bench.multihost [--seconds 10] [--concurrency 16]

Every host shares this machine's cores: the figures compare the paths, they are not what separate
machines would give.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from bench.loadgen import LoadResult, run_wrk
from testbed.spread_fleet import GATEWAY_ENV, SpreadFleet, spread_fleet

ROW = [0.1, 0.2, 0.3, 0.4]


def _deploy(fleet: SpreadFleet) -> None:
    rng = np.random.default_rng(1)
    model = fleet.root / "scores.skops"
    model.write_bytes(sio.dumps(LogisticRegression().fit(rng.random((60, 4)), np.arange(60) % 2)))
    status, body = fleet.call("POST", f"{fleet.url('gateway1')}/api/v1/models", None, "-F", "name=scores",
                              "-F", "runtime=sklearn", "-F", f"file=@{model}", timeout_s=120)  # fmt: skip
    assert status == 201, body


def _load(fleet: SpreadFleet, via: str, seconds: float, concurrency: int) -> LoadResult:
    """wrk on the client host (it completes TLS handshakes without checking certificates)."""
    url = f"{fleet.url(via)}/api/v1/models/scores/predict"
    body = json.dumps({"instances": [ROW]}).encode()
    prefix = fleet.net.command("client", [])
    return run_wrk(url, body, concurrency, seconds, f"Bearer {fleet.token}", prefix)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multihost", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = []
    root = Path(tempfile.mkdtemp(prefix="modelfleet-bench-multihost-"))
    for tls in (False, True):
        (root / ("tls" if tls else "plain")).mkdir()
        no_cache = {**GATEWAY_ENV, "INFERRER_PREDICTION_CACHE_SIZE": "0"}  # every request to a node
        with spread_fleet(root / ("tls" if tls else "plain"), tls=tls, gateway_env=no_cache) as fleet:
            _deploy(fleet)
            _load(fleet, "front", 3, args.concurrency)  # warm every connection pool and model
            paths = [("one gateway host", "gateway1")] if not tls else []
            paths.append(("front + two gateway hosts", "front"))
            for label, via in paths:
                summary = _load(fleet, via, args.seconds, args.concurrency)
                rows.append((label, "TLS" if tls else "plain HTTP", summary))
    print(f"\nc={args.concurrency}, {args.seconds:g} s each\n")
    print("| path | hops | req/s | p50 | p99 | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for label, hops, result in rows:
        print(f"| {label} | {hops} | {result.rps:,.0f} | {result.p50_ms:.1f} ms | {result.p99_ms:.1f} ms | "
              f"{result.errors} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
