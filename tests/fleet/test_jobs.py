"""Batch jobs on a real fleet (3 nodes, nginx, two gateway processes sharing the SQLite job store,
real files): a 200,000-row JSON-lines file with an id and a label column, fanned out in 16+
partitions, gathered in input order; the same job with the inferrer SIGKILLed in the middle, resumed
by the restarted one with every row exactly once; a node killed under a partition (retried), every
node stalled (timed out, attempts exhausted), a running job cancelled."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from tests.fleet.job_calls import ROWS, check_result, retries_logged, submit_rows_job, wait_for_every_node
from wire.job_answers import UNFINISHED

pytestmark = pytest.mark.fleet

FEATURES = ["f0", "f1", "f2", "f3"]
PARTITION_TIMEOUT_S = 10.0
INLINE_JOBS = 200


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    running = start_fleet(
        Path(tmp_path_factory.mktemp("jobs")),
        nodes=3,
        # Two gateway processes share the SQLite job store: every partition claimed by one of them.
        extra_args=("--no-example", "--inferrer-workers", "2"),
        # A dead gateway's claims lapse quickly; a stalled node's partition is given up after 10 s
        # (each partition of these tests takes well under a second).
        env={"INFERRER_JOBS_LEASE_S": "3", "INFERRER_JOBS_PARTITION_TIMEOUT_S": str(PARTITION_TIMEOUT_S)},
    )
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def batch(fleet: RunningFleet) -> tuple[pd.DataFrame, LogisticRegression]:
    """A model fitted on named features, and a file of rows with an id and a label besides them."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(rng.normal(size=(ROWS, len(FEATURES))).round(6), columns=FEATURES)
    labels = (frame["f0"] + frame["f2"] > 0).astype(int)
    model = LogisticRegression().fit(frame, labels)
    assert fleet.deploy("scores", sio.dumps(model)).status_code == 201
    records = frame.assign(id=range(ROWS), label=labels).to_dict("records")
    data_dir = fleet.data_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "rows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return frame, model


def test_a_200000_row_file_fans_out_over_every_node_and_gathers_in_order(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = batch
    started = time.monotonic()
    job = submit_rows_job(fleet)
    manifest = check_result(fleet, job, frame, model)
    by_node = Counter(part["node"] for part in manifest["parts"])
    seconds = time.monotonic() - started
    print(f"{ROWS} rows, {job['partitions']} partitions in {seconds:.1f}s; by node {dict(by_node)}")
    assert set(by_node) == {"modelhost-1", "modelhost-2", "modelhost-3"}


def test_a_job_survives_a_sigkilled_inferrer_with_every_row_once(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = batch
    job = submit_rows_job(fleet)
    assert wait_until(
        lambda: fleet.job_view(job["id"])["partitions"]["done"] >= 2, timeout_s=60, interval_s=0.05
    )
    before = fleet.job_view(job["id"])["partitions"]["done"]
    pid = fleet.pid("inferrer")
    os.kill(pid, signal.SIGKILL)
    assert before < job["partitions"], "the kill came too late: the job had finished"
    # The launcher restarts it (its orphaned workers go first): the job resumes in the new one.
    assert wait_until(lambda: fleet.pid("inferrer") != pid and fleet.is_ready(), timeout_s=60)
    manifest = check_result(fleet, job, frame, model)
    parts = [part["location"] for part in manifest["parts"]]
    assert len(parts) == len(set(parts)) == job["partitions"]  # no partition counted twice
    print(f"inferrer SIGKILLed with {before}/{job['partitions']} partitions done: resumed, {ROWS} rows once")


def test_the_same_from_csv_with_a_node_sigkilled_mid_job(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    """A node that dies under a partition costs an attempt: the partition runs again, and its part
    says so (its attempt), and the gateway logs the retry."""
    frame, model = batch
    table = frame.assign(id=range(ROWS), label=(frame["f0"] > 0).astype(int))
    (fleet.data_dir / "data" / "rows.csv").write_text(table.to_csv(index=False))
    body = {"model": "scores", "input": "rows.csv", "partition_bytes": 256 * 1024}
    job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30).json()
    # Every node works a partition at a time while the job runs (several in flight, least_conn).
    assert wait_until(
        lambda: fleet.job_view(job["id"])["partitions"]["done"] >= 3, timeout_s=60, interval_s=0.02
    )
    os.kill(fleet.pid("modelhost-2"), signal.SIGKILL)
    assert fleet.job_view(job["id"])["partitions"]["done"] < job["partitions"] - 3, "the kill came too late"
    view = fleet.finished_job(job["id"])
    assert view["status"] == "succeeded", view
    parts = orjson.loads((fleet.data_dir / "data" / "jobs" / job["id"] / "_manifest.json").read_bytes())[
        "parts"
    ]
    retried = [part for part in parts if part["attempt"] >= 2]
    assert retried, "no partition was retried after its node died"
    logged = retries_logged(fleet, job["id"])
    assert {part["location"].rsplit("part-", 1)[1].split(".")[0] for part in retried} <= {
        f"{idx:05d}" for idx in logged
    }, logged
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=120)
    lines = result.text.splitlines()
    assert lines[0] == "f0,f1,f2,f3,id,label,prediction"  # one header, the input's plus ours
    assert [int(line.split(",")[4]) for line in lines[1:]] == list(range(ROWS))
    assert [int(line.split(",")[6]) for line in lines[1:]] == model.predict(frame).tolist()
    print(f"CSV, {job['partitions']} partitions, modelhost-2 SIGKILLed mid-job: succeeded, {ROWS} rows once")


def test_a_running_file_job_cancelled_stays_cancelled_and_never_writes_success(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    """Cancelled with partitions on the nodes: nothing more is sent, the partitions under way end
    without finishing the job, and neither `_manifest.json` nor `_SUCCESS` is ever written."""
    frame, model = batch
    job = submit_rows_job(fleet)
    assert wait_until(
        lambda: fleet.job_view(job["id"])["partitions"]["done"] >= 2, timeout_s=60, interval_s=0.02
    )
    cancel = httpx.delete(f"{fleet.url}/api/v1/jobs/{job['id']}", headers=fleet.auth, timeout=30)
    assert cancel.status_code == 200, cancel.text
    cancelled = cancel.json()
    assert cancelled["status"] == "cancelled", cancelled
    assert cancelled["partitions"]["done"] < job["partitions"], "the cancel came too late"
    # The partitions under way when it was cancelled end on their nodes long before a whole later
    # job of the same size has gone through the fleet.
    check_result(fleet, submit_rows_job(fleet), frame, model)
    view = fleet.job_view(job["id"])
    output = fleet.data_dir / "data" / "jobs" / job["id"]
    print(f"cancelled at {cancelled['partitions']}, after a later job: {view['partitions']}")
    assert view["status"] == "cancelled" and view["error"] == "cancelled by request"
    assert view["partitions"]["done"] < job["partitions"]
    assert not (output / "_SUCCESS").exists() and not (output / "_manifest.json").exists()
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=30)
    assert result.status_code == 409 and "cancelled" in result.json()["error"]


def test_a_partition_whose_nodes_stall_times_out_and_exhausts_its_attempts(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    """Every node stopped (SIGSTOP): each attempt is given up after the partition timeout and
    retried, and the last one fails the job with the reason; the nodes serve again after SIGCONT."""
    data = fleet.data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "small.jsonl").write_bytes(
        b"".join(orjson.dumps({"f0": i, "f1": 0, "f2": 1, "f3": 2}) + b"\n" for i in range(50))
    )
    wait_for_every_node(fleet)
    nodes = [fleet.pid(f"modelhost-{i}") for i in (1, 2, 3)]
    for pid in nodes:
        os.kill(pid, signal.SIGSTOP)
    try:
        body = {"model": "scores", "input": "small.jsonl", "max_attempts": 2}
        job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30).json()
        started = time.monotonic()
        view = fleet.finished_job(job["id"], timeout_s=4 * PARTITION_TIMEOUT_S + 30)
        took = time.monotonic() - started
    finally:
        for pid in nodes:
            os.kill(pid, signal.SIGCONT)
    print(
        f"every node stalled, 2 attempts of {PARTITION_TIMEOUT_S:g} s: {view['status']} in {took:.1f}s: "
        f"{view['error']}"
    )
    assert view["status"] == "failed", view
    assert view["partitions"] == {"total": 1, "done": 0, "failed": 1}
    assert "partition 0 failed 2 times" in view["error"] and "did not answer in time" in view["error"]
    assert took >= 2 * PARTITION_TIMEOUT_S  # each attempt waited for its whole timeout
    assert retries_logged(fleet, job["id"]) == [0]  # retried once, then failed for good
    assert (fleet.data_dir / "data" / "jobs" / job["id"] / "_SUCCESS").exists() is False


def test_three_malformed_lines_fail_the_job_or_are_skipped(fleet: RunningFleet) -> None:
    good = [orjson.dumps({"id": i, "f0": i, "f1": 0.5, "f2": -1, "f3": 2}) for i in range(1000)]
    good[10], good[500], good[998] = (
        b"{oops",
        b'{"id": 500, "f0": 1}',
        b'{"id": 998, "f0": "x", "f1": 1, "f2": 1}',
    )
    (fleet.data_dir / "data" / "bad.jsonl").write_bytes(b"\n".join(good) + b"\n")
    for mode, status in (("fail", "failed"), ("skip", "succeeded")):
        body = {"model": "scores", "input": "bad.jsonl", "on_bad_rows": mode, "partition_bytes": 8192}
        job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30).json()
        view = fleet.finished_job(job["id"])
        assert view["status"] == status, view
        if mode == "fail":
            assert "bad rows" in view["error"], view["error"]
        else:
            assert view["rows"] == {"done": 997, "failed": 3}
            assert len(view["errors"]) == 3 and all(e["reason"] for e in view["errors"])


def test_200_inline_jobs_at_concurrency_32_all_succeed(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = batch
    rows = frame.iloc[:INLINE_JOBS]
    expected = model.predict(rows).tolist()

    def run(i: int) -> tuple[str, int]:
        record = rows.iloc[i].to_dict()
        answer = httpx.post(
            f"{fleet.url}/api/v1/jobs",
            json={"model": "scores", "records": [record]},
            headers=fleet.auth,
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        return answer.json()["id"], i

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        submitted = list(pool.map(run, range(INLINE_JOBS)))

    ids = {job_id for job_id, _ in submitted}

    def all_finished() -> bool:
        listed = httpx.get(
            f"{fleet.url}/api/v1/jobs", params={"limit": INLINE_JOBS}, headers=fleet.auth
        ).json()
        finished = {job["id"] for job in listed["jobs"] if job["status"] not in UNFINISHED}
        return ids <= finished

    assert wait_until(all_finished, timeout_s=300, interval_s=0.5)

    def result(item: tuple[str, int]) -> tuple[int, Any]:
        job_id, i = item
        answer = httpx.get(f"{fleet.url}/api/v1/jobs/{job_id}/result", headers=fleet.auth, timeout=60)
        assert answer.status_code == 200, answer.text  # 409 unless it succeeded
        return i, answer.json()["predictions"][0]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = dict(pool.map(result, submitted))
    assert [answers[i] for i in range(INLINE_JOBS)] == expected
    print(f"{INLINE_JOBS} inline jobs at concurrency 32: all succeeded in {time.monotonic() - started:.1f}s")


def test_the_cli_submits_a_file_follows_it_and_fetches_the_result(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    frame, model = batch
    rows = frame.iloc[:20_000].assign(id=range(20_000))
    local = tmp_path / "mine.csv"  # anywhere on the client's disk: uploaded with the job
    local.write_text(rows.to_csv(index=False))
    submitted = fleet.cli(
        "jobs", "submit", str(local), "--model", "scores", "--partition-mib", "0.1", "--wait"
    )
    assert submitted.returncode == 0, submitted.stderr
    view = json.loads(submitted.stdout)
    assert view["status"] == "succeeded" and view["rows"]["done"] == 20_000
    assert "partitions" in submitted.stderr and "#" in submitted.stderr  # the progress bar
    status = fleet.cli("jobs", "status", view["id"])
    assert json.loads(status.stdout)["id"] == view["id"]
    listed = json.loads(fleet.cli("jobs", "list", "--status", "succeeded").stdout)
    assert view["id"] in [job["id"] for job in listed["jobs"]]
    result = fleet.cli("jobs", "result", view["id"]).stdout.splitlines()
    assert result[0].endswith(",prediction") and len(result) == 20_001
    assert [int(line.rsplit(",", 1)[1]) for line in result[1:]] == model.predict(rows[FEATURES]).tolist()
    missing = fleet.cli("jobs", "status", "job-nope")
    assert missing.returncode == 1 and "no job" in missing.stdout


def test_the_same_from_parquet_by_row_group(
    fleet: RunningFleet, batch: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = batch
    table = frame.assign(id=range(ROWS), label=(frame["f1"] > 0).astype(int))
    table.to_parquet(fleet.data_dir / "data" / "rows.parquet", row_group_size=10_000)
    body = {"model": "scores", "input": "rows.parquet"}
    job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30).json()
    assert job["partitions"] == ROWS // 10_000
    view = fleet.finished_job(job["id"])
    assert view["status"] == "succeeded", view
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=120)
    rows = [orjson.loads(line) for line in result.content.splitlines()]
    assert [r["id"] for r in rows] == list(range(ROWS))
    assert [r["prediction"] for r in rows] == model.predict(frame).tolist()
    print(f"parquet, {job['partitions']} row groups: succeeded, {ROWS} rows once")
