"""What the job fleet tests ask a fleet: submit the 200,000-row file, check a finished
job's result against the model, and the retries a gateway logged."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pandas as pd

from deploy.ephemeral_fleet import RunningFleet, wait_until

ROWS = 200_000


def submit_rows_job(fleet: RunningFleet) -> dict[str, Any]:
    body = {"model": "scores", "input": "rows.jsonl", "partition_bytes": 512 * 1024}
    answer = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    assert job["partitions"] >= 16
    return job


def check_result(fleet: RunningFleet, job: dict[str, Any], frame: pd.DataFrame, model: Any) -> dict[str, Any]:
    view = fleet.finished_job(job["id"])
    assert view["status"] == "succeeded", view
    assert view["partitions"]["done"] == job["partitions"] and view["rows"]["done"] == ROWS
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=120)
    rows = [orjson.loads(line) for line in result.content.splitlines()]
    assert [r["id"] for r in rows] == list(range(ROWS))  # every row exactly once, in input order
    assert [r["prediction"] for r in rows] == model.predict(frame).tolist()
    assert all(r["label"] in (0, 1) for r in rows[:100])  # carried, never fed (the model has 4 features)
    output = fleet.data_dir / "data" / "jobs" / job["id"]
    manifest = orjson.loads((output / "_manifest.json").read_bytes())
    assert manifest["rows"] == ROWS and len(manifest["parts"]) == job["partitions"]
    assert (output / "_SUCCESS").exists()
    return manifest


def retries_logged(fleet: RunningFleet, job_id: str) -> list[int]:
    """The partitions of a job that the gateway logged as retried ("partition <job>/<idx>: <why>;
    retrying in ..."), one entry a retry. The log, not /metrics: with two gateway processes each
    counts its own retries, and a scrape reaches one of them."""
    logs = fleet.data_dir / "run" / "logs"
    text = "".join(path.read_text(errors="replace") for path in sorted(logs.glob("inferrer.log*")))
    return [int(idx) for idx in re.findall(rf"partition {job_id}/(\d+): .*; retrying in", text)]


def wait_for_every_node(fleet: RunningFleet, nodes: int = 3) -> None:
    """Until every node is ready. A node killed by an earlier test may be restarting still: stopped
    half-started, it would refuse connections, and nginx would answer 502 at once."""
    assert wait_until(
        lambda: all(fleet.node_view(f"modelhost-{i}")["ready"] for i in range(1, nodes + 1)), 60
    )
