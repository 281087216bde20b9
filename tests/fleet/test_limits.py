"""Limits: body size at nginx and at the inferrer, rows x features per request; clear 413s, and
the inferrer's memory stays where it was."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.harness import RunningFleet

pytestmark = pytest.mark.fleet

WIDE = 200  # features: 1,000,000 values per request allow 5,000 rows


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def wide(fleet: RunningFleet) -> str:
    features = np.random.default_rng(3).normal(size=(300, WIDE))
    model = LogisticRegression(max_iter=200).fit(features, (features[:, 0] > 0).astype(int))
    deployed = fleet.deploy("wide", sio.dumps(model))
    assert deployed.status_code == 201, deployed.text
    return f"{fleet.url}/api/v1/models/wide/predict"


def test_rows_times_features_are_capped_on_every_protocol(fleet: RunningFleet, wide: str) -> None:
    allowed = httpx.post(wide, json={"instances": [[0.0] * WIDE] * 5000}, timeout=60)
    assert allowed.status_code == 200, allowed.text
    assert len(allowed.json()["predictions"]) == 5000
    over = httpx.post(wide, json={"instances": [[0.0] * WIDE] * 5001}, timeout=60)
    assert over.status_code == 413
    assert "5001 rows of 200 features exceed the limit of 5000 rows" in over.json()["error"]
    csv = httpx.post(wide, content=("0," * (WIDE - 1) + "0\n") * 5001, headers={"content-type": "text/csv"})
    assert csv.status_code == 413 and "5001 rows" in csv.json()["error"]
    tensor = {"name": "x", "shape": [5001, WIDE], "datatype": "FP64", "data": [0.0] * (5001 * WIDE)}
    v2 = httpx.post(f"{fleet.url}/v2/models/wide/infer", json={"inputs": [tensor]}, timeout=60)
    assert v2.status_code == 413 and "5001 rows" in v2.json()["error"]
    print(f"wide model ({WIDE} features): 5000 rows answered, 5001 rows 413 on JSON, CSV and V2")


def test_oversized_bodies_are_refused_at_nginx_and_the_inferrer_without_growing_memory(
    fleet: RunningFleet, wide: str
) -> None:
    inferrer = fleet.pid("inferrer")
    huge = b'{"instances": [' + b"[0.5, 0.5, 0.5, 0.5]," * 900_000 + b"[0, 0, 0, 0]]}"  # ~18 MiB
    nginx_predict = f"http://127.0.0.1:{fleet.ports['nginx']}/api/v1/models/iris/predict"
    at_nginx = httpx.post(nginx_predict, content=huge, headers={"content-type": "application/json"})
    assert at_nginx.status_code == 413  # nginx's client_max_body_size, before any node

    before = _rss_mib(inferrer)
    statuses = []
    for _ in range(10):
        statuses.append(httpx.post(f"{fleet.url}/api/v1/models/iris/predict", content=huge, timeout=60))
        statuses.append(httpx.post(wide, json={"instances": [[0.0] * WIDE] * 5001}, timeout=60))
    after = _rss_mib(inferrer)
    codes = sorted({r.status_code for r in statuses})
    print(
        f"20 refused requests (10 x {len(huge) / 2**20:.0f} MiB bodies, 10 x 5001x{WIDE} rows): "
        f"statuses {codes}; inferrer RSS {before:.0f} -> {after:.0f} MiB; nginx: {at_nginx.status_code}"
    )
    assert codes == [413]
    assert all(r.json()["error"] for r in statuses)
    assert after - before < 64
    ok = httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert ok.status_code == 200
