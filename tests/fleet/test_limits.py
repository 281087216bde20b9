"""Limits: body size at nginx and at the inferrer, rows x features per request; clear 413s, and
the inferrer's peak memory (VmHWM, reset before the requests) stays within the stated bounds."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet

pytestmark = pytest.mark.fleet

WIDE = 200  # features: 1,000,000 values per request allow 5,000 rows


def _status_mib(pid: int, field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak resident size since the last reset), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> float:
    """Reset the process's peak resident size (Linux: VmHWM) to its resident size; return that."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_mib(pid, "VmRSS")


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

    # Peaks, not the resident size afterwards: a server that held each body while refusing it
    # would be back down by then. Reset before each kind, read after it.
    before_bodies = _reset_peak(inferrer)
    answers = [
        httpx.post(f"{fleet.url}/api/v1/models/iris/predict", content=huge, timeout=60) for _ in range(10)
    ]
    peak_bodies = _status_mib(inferrer, "VmHWM")
    before_rows = _reset_peak(inferrer)
    answers += [httpx.post(wide, json={"instances": [[0.0] * WIDE] * 5001}, timeout=60) for _ in range(10)]
    peak_rows = _status_mib(inferrer, "VmHWM")
    codes = sorted({r.status_code for r in answers})
    print(
        f"20 refused requests (10 x {len(huge) / 2**20:.0f} MiB bodies, 10 x 5001x{WIDE} rows): "
        f"statuses {codes}; inferrer peak RSS {before_bodies:.0f} -> {peak_bodies:.0f} MiB for the bodies, "
        f"{before_rows:.0f} -> {peak_rows:.0f} MiB for the rows; nginx: {at_nginx.status_code}"
    )
    assert codes == [413]
    assert all(r.json()["error"] for r in answers)
    # A declared Content-Length over the limit is refused before the body is read: the peak grows by
    # less than one body's limit (~0 measured), so no body was ever held.
    assert peak_bodies - before_bodies < 16
    # 5,001 rows are refused after parsing (~5 MiB of JSON, about 12x that as Python objects while
    # parsed: ~47-62 MiB measured, set by allocation, not machine load). The bound is one such parse
    # with room to spare: ten requests whose memory stayed would take the peak far past it.
    assert peak_rows - before_rows < 96
    ok = httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert ok.status_code == 200


def _rejected(fleet: RunningFleet) -> float:
    rows = httpx.get(f"{fleet.url}/metrics").text.splitlines()
    return sum(
        float(row.split()[-1])
        for row in rows
        if row.startswith("modelfleet_http_rejected_requests_total{") and 'reason="PayloadTooLarge"' in row
    )


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_a_client_that_sends_its_whole_body_first_reads_the_413(fleet: RunningFleet, framing: str) -> None:
    """Python's urllib sends all 20 MiB before it reads the answer: the inferrer reads and drops the
    rest of a refused body (bounded) before answering, so the client gets the 413, not a reset."""
    body = b'{"instances": [' + b"[0.5, 0.5, 0.5, 0.5]," * 1_000_000 + b"[0, 0, 0, 0]]}"  # ~20 MiB
    data = body if framing == "declared" else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    request = urllib.request.Request(
        f"{fleet.url}/api/v1/models/iris/predict", data=data, headers={"content-type": "application/json"}
    )
    before = _rejected(fleet)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert "larger than the limit" in json.loads(refused.value.read())["error"]
    assert _rejected(fleet) == before + 1  # every refusal is counted, the declared one included
