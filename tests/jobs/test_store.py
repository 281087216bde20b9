"""The job store, on SQLite (WAL) and on a real PostgreSQL server, with the same statements: claims
under a lease, completion at most once, the last one known."""

from __future__ import annotations

import concurrent.futures
import time

from inferrer.jobs.records import FilePlan, InlinePlan, NewJob, PartOutput, Span
from inferrer.jobs.schema import jobs, open_engine
from inferrer.jobs.store import JobStore
from wire.job_answers import RowError


def _store(url: str) -> JobStore:
    return JobStore(open_engine(url))


def _job(job_id: str, partitions: int, created: float = 0.0) -> NewJob:
    now = time.time()
    plan = InlinePlan(instances=[[1.0]], sha256="0" * 64)
    spans = [Span(start=i) for i in range(partitions)]
    return NewJob(job_id, "m", "1", plan, spans, created or now, now + 3600)


def _output(rows: int) -> PartOutput:
    return PartOutput(location="out/part", rows=rows, sha256="0" * 64)


def test_claims_take_each_partition_once_until_their_lease_lapses(url: str) -> None:
    store = _store(url)
    store.create(_job("a", 5))
    now = time.time()
    first = store.claim(limit=3, lease_s=10, now=now)
    assert [(c.idx, c.attempt) for c in first] == [(0, 1), (1, 1), (2, 1)]
    assert store.job("a").status == "running"  # type: ignore[union-attr]
    second = store.claim(limit=10, lease_s=10, now=now)
    assert [c.idx for c in second] == [3, 4]
    assert store.claim(limit=10, lease_s=10, now=now + 5) == []  # all leased
    lapsed = store.claim(limit=10, lease_s=10, now=now + 11)  # their gateway died: claimable again
    assert sorted((c.idx, c.attempt) for c in lapsed) == [(i, 2) for i in range(5)]


def test_a_partition_completes_once_and_only_the_last_completion_says_so(url: str) -> None:
    store = _store(url)
    store.create(_job("a", 3))
    store.claim(limit=3, lease_s=10)
    assert store.complete("a", 0, _output(10), "node-1", []) is False
    assert store.complete("a", 0, _output(99), "node-2", [(7, "bad")]) is False  # a duplicate: no change
    assert store.complete("a", 1, _output(10), "node-1", [(15, "not JSON")]) is False
    assert store.complete("a", 2, _output(10), "node-1", []) is True
    assert store.complete("a", 2, _output(10), "node-1", []) is False
    parts = store.partitions_of("a")
    assert [(p.status, p.rows_done, p.node) for p in parts] == [("done", 10, "node-1")] * 3
    assert parts[0].output == _output(10) and parts[0].span == Span(start=0)
    assert store.errors_of("a") == [RowError(partition=1, line=15, reason="not JSON")]
    job = store.job("a")
    assert job is not None and job.plan == InlinePlan(instances=[[1.0]], sha256="0" * 64)


def test_concurrent_completions_report_the_last_exactly_once(url: str) -> None:
    store = _store(url)
    store.create(_job("a", 40))
    store.claim(limit=40, lease_s=60)
    attempts = [i % 40 for i in range(160)]  # every partition completed four times, concurrently

    def complete(idx: int) -> bool:
        return store.complete("a", idx, _output(1), "node", [])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        lasts = list(pool.map(complete, attempts))
    assert lasts.count(True) == 1
    assert all(p.status == "done" for p in store.partitions_of("a"))


def test_concurrent_claimers_never_share_a_partition(url: str) -> None:
    store = _store(url)
    store.create(_job("a", 200))
    other = JobStore(open_engine(url))  # as another gateway would

    def claim(round_: int) -> list[int]:
        return [c.idx for c in (store if round_ % 2 else other).claim(limit=7, lease_s=60)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        taken = [idx for batch in pool.map(claim, range(40)) for idx in batch]
    assert sorted(taken) == list(range(200))  # each once: no partition claimed twice


def test_concurrent_claimers_of_two_gateways_stay_within_the_fleet_limit(url: str) -> None:
    store = _store(url)
    store.create(_job("a", 100))
    other = JobStore(open_engine(url))

    def claim(round_: int) -> list[int]:
        claimer = store if round_ % 2 else other
        return [c.idx for c in claimer.claim(limit=5, lease_s=60, fleet_limit=30)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        taken = [idx for batch in pool.map(claim, range(40)) for idx in batch]
    assert len(taken) == len(set(taken)) == 30  # never past the limit, counted across gateways


def test_retries_wait_their_backoff_failures_are_final_and_jobs_finish_once(url: str) -> None:
    store = _store(url)
    store.create(_job("old", 1, created=1.0))
    store.create(_job("new", 1, created=2.0))
    (first,) = store.claim(limit=1, lease_s=60)  # the older job's partition first
    assert store.release(first, "node died", retry_after_s=30) is True
    assert [c.job_id for c in store.claim(limit=5, lease_s=60)] == ["new"]  # old waits its backoff
    (second,) = store.claim(limit=5, lease_s=60, now=time.time() + 31)
    assert second.attempt == 2
    assert store.release(first, "a lapsed claim's late failure", retry_after_s=None) is False  # ignored
    assert store.partitions_of("old")[0].status == "running"
    assert store.release(second, "bad row at line 3", retry_after_s=None) is True
    assert store.partitions_of("old")[0].status == "failed"
    assert store.end("old", "failed", "partition 0: bad row at line 3") is True
    assert store.end("old", "cancelled", "too late") is False  # finished already: unchanged
    assert store.job("old").status == "failed"  # type: ignore[union-attr]
    later = store.claim(limit=5, lease_s=60, now=time.time() + 3600)  # every lease lapsed by then
    assert [c.job_id for c in later] == ["new"]  # a finished job's partitions are never claimed
    assert [j.id for j in store.listing(None, 10)] == ["new", "old"]
    assert [j.id for j in store.listing("failed", 10)] == ["old"]


def test_a_job_stored_before_this_release_reads_as_a_typed_plan(url: str) -> None:
    """Rows written by the previous release name the prediction kind `output`, and a file job's
    output format None (the default): both read."""
    store = _store(url)
    store.create(_job("a", 1))
    old_plan = {
        "kind": "file", "output": "predict_proba", "input": "in.parquet", "format": "parquet",
        "header": ["a"], "output_location": "jobs/a", "on_bad_rows": "fail", "max_attempts": 3,
        "size": 10, "output_format": None, "sha256": "0" * 64,
    }  # fmt: skip
    with store.engine.begin() as db:
        db.execute(jobs.update().where(jobs.c.id == "a").values(spec=old_plan))
    job = store.job("a")
    assert job is not None and isinstance(job.plan, FilePlan)
    assert (job.plan.prediction, job.plan.out_format, job.plan.assemble_to) == (
        "predict_proba",
        "jsonl",
        None,
    )
