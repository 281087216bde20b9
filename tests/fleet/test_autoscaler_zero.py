"""An autoscaled fleet at zero (`modelfleet up --min-nodes 0 --max-nodes 2`): the first request
waits at the gateway for a cold start and succeeds; one whose deadline cannot fit a cold start gets
503 with Retry-After at once; a job of 32 partitions submitted to the idle fleet starts nodes and
completes, every row once; and the fleet returns to zero after keep-warm each time."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from tests.fleet.test_autoscaler import FAST, node_count, view

ROW = {"instances": [[0.5, -1.0, 2.0, 0.0]]}


@pytest.fixture(scope="module")
def from_zero(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    env_lines = "".join(f"{k}={v}\n" for k, v in FAST.items())
    fleet = start_fleet(
        tmp_path_factory.mktemp("from-zero"), nodes=1, env_lines=env_lines,
        extra_args=("--min-nodes", "0", "--max-nodes", "2", "--no-example"),
    )  # fmt: skip
    rng = np.random.default_rng(5)
    features = pd.DataFrame(rng.normal(size=(200, 4)), columns=["f0", "f1", "f2", "f3"])
    model = LogisticRegression().fit(features, features["f0"] > 0)
    answer = fleet.deploy("zero", sio.dumps(model))
    assert answer.status_code == 201, answer.text  # activated with no node: the first to start loads it
    assert answer.json()["activated"] is True
    yield fleet
    assert fleet.stop() == 0, fleet.log()


def test_the_first_request_waits_for_a_cold_start_and_succeeds(from_zero: RunningFleet) -> None:
    fleet = from_zero
    assert node_count(fleet) == 0
    started = time.monotonic()
    answer = httpx.post(f"{fleet.url}/api/v1/models/zero/predict", json=ROW, timeout=60)
    waited = time.monotonic() - started
    print(f"\nfirst request after a cold start: {answer.status_code} in {waited:.2f} s")
    assert answer.status_code == 200, answer.text
    assert answer.json()["node"] == "modelhost-1"
    events = view(fleet)["events"]
    assert any(e["kind"] == "up" and e["nodes_from"] == 0 for e in events), events
    assert wait_until(lambda: node_count(fleet) == 0, timeout_s=60), view(fleet)
    print(f"back to zero; cold start average {view(fleet)['signals']['cold_start_s']:.2f} s")


def test_a_deadline_shorter_than_a_cold_start_gets_503_with_retry_after(from_zero: RunningFleet) -> None:
    fleet = from_zero
    if view(fleet)["signals"]["cold_start_s"] is None:  # run alone: one cold start, measured
        assert httpx.post(f"{fleet.url}/api/v1/models/zero/predict", json=ROW, timeout=60).status_code == 200
    assert wait_until(lambda: node_count(fleet) == 0, timeout_s=60), view(fleet)
    cold = view(fleet)["signals"]["cold_start_s"]
    assert cold is not None and cold > 0.5
    started = time.monotonic()
    answer = httpx.post(
        f"{fleet.url}/api/v1/models/zero/predict", json=ROW, headers={"X-Request-Timeout": "0.5"}, timeout=30
    )
    print(f"\n503 after {time.monotonic() - started:.2f} s, Retry-After {answer.headers.get('retry-after')}")
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) == max(1, math.ceil(cold))
    assert "no node was ready" in answer.json()["error"]
    assert wait_until(lambda: node_count(fleet) == 0, timeout_s=60), view(fleet)


def test_a_job_submitted_to_an_idle_fleet_starts_nodes_and_completes(from_zero: RunningFleet) -> None:
    fleet = from_zero
    assert wait_until(lambda: node_count(fleet) == 0, timeout_s=60), view(fleet)
    rows = 32 * 200
    records = [
        {"id": i, "f0": round(math.sin(i), 4), "f1": 0.5, "f2": -0.25, "f3": float(i % 7)}
        for i in range(rows)
    ]
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    data = fleet.data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "zero.jsonl").write_bytes(lines)
    body = {"model": "zero", "input": "zero.jsonl", "partition_bytes": math.ceil(len(lines) / 32)}
    answer = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    started = time.monotonic()
    finished = fleet.finished_job(job["id"], timeout_s=180)
    print(f"\njob of {job['partitions']} partitions at min 0: {finished['status']} in "
          f"{time.monotonic() - started:.1f} s; {finished['rows']}")  # fmt: skip
    assert finished["status"] == "succeeded", finished
    assert job["partitions"] == 32
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=60)
    ids = [orjson.loads(line)["id"] for line in result.content.splitlines()]
    assert ids == list(range(rows))  # every row once, in input order
    assert any(e["reason"].endswith("job partitions wait") or e["nodes_from"] == 0
               for e in view(fleet)["events"] if e["kind"] == "up")  # fmt: skip
    assert wait_until(lambda: node_count(fleet) == 0, timeout_s=60), view(fleet)
