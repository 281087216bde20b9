"""The watch store, on SQLite and on a real PostgreSQL server: each file version recorded once
however many gateways list it, claimed by exactly one of many concurrent claimers within the fleet's
limit, settled once, and a dead claimer's claim taken over once."""

from __future__ import annotations

import concurrent.futures
import time

from datafiles.locations import FileEntry
from inferrer.jobs.records import InlinePlan, NewJob, OutputManifest, Span
from inferrer.jobs.schema import open_engine
from inferrer.jobs.store import JobStore
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store import WatchStore

SPEC = WatchSpec(name="w", input="in", model="m", output_location="out")


def _stores(url: str) -> tuple[WatchStore, JobStore]:
    engine = open_engine(url)
    return WatchStore(engine), JobStore(engine)


def _entries(n: int, identity: str = "1:1") -> list[FileEntry]:
    return [FileEntry(f"f{i:03d}.csv", 10, identity) for i in range(n)]


def test_a_file_version_is_recorded_once_and_a_new_version_again(url: str) -> None:
    store, _ = _stores(url)
    store.create(SPEC)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        added = list(pool.map(lambda _: store.record("w", _entries(50)), range(4)))
    assert sum(added) == 50
    assert store.record("w", _entries(3, identity="2:2")) == 3  # rewritten: new versions
    assert len(store.known("w")) == 53
    assert store.counts() == {"w": {"pending": 53, "running": 0, "done": 0, "failed": 0}}


def test_concurrent_claimers_take_each_file_once_within_the_fleet_limit(url: str) -> None:
    store, _ = _stores(url)
    store.create(SPEC)
    store.record("w", _entries(60))

    def claim(_: int) -> list[int]:
        taken = []
        for _ in range(20):
            taken += [f.id for f in store.claim(limit=5, lease_s=30, max_running=40)]
        return taken

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        claimed = [file_id for batch in pool.map(claim, range(4)) for file_id in batch]
    assert len(claimed) == len(set(claimed)) == 40  # none twice, never past the limit
    assert store.counts()["w"]["running"] == 40 and store.counts()["w"]["pending"] == 20


def test_a_paused_watch_has_nothing_claimed(url: str) -> None:
    store, _ = _stores(url)
    store.create(SPEC)
    store.record("w", _entries(3))
    assert store.set_paused("w", True)
    assert store.claim(limit=10, lease_s=30, max_running=10) == []
    store.set_paused("w", False)
    assert len(store.claim(limit=10, lease_s=30, max_running=10)) == 3


def test_a_file_settles_once_and_a_lapsed_claim_is_taken_over_once(url: str) -> None:
    store, jobs = _stores(url)
    store.create(SPEC)
    store.record("w", _entries(2))
    first, second = store.claim(limit=2, lease_s=0.05, max_running=10)
    assert first.job_id and second.job_id and first.job_id != second.job_id  # fixed with the claim
    assert store.assign(first, lease_s=30, version="1", output="out/f000.csv")
    now = time.time()
    plan = InlinePlan(instances=[[1.0]], sha256="0" * 64)
    jobs.create(NewJob(first.job_id, "m", "1", plan, [Span()], now, now + 60))
    assert store.submitted(first)
    time.sleep(0.1)
    lapsed = store.lapsed()
    assert [f.id for f in lapsed] == [second.id]  # submitted: no longer under a claim
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        taken = [t for t in pool.map(lambda _: store.take_over(lapsed[0], lease_s=30), range(4)) if t]
    assert len(taken) == 1 and taken[0].job_id == second.job_id  # the same job, made once
    # The claimer that lapsed can change nothing more: not its version, not its state.
    assert not store.assign(second, lease_s=30, version="1")
    assert not store.retry(second, "late", not_before=0.0)
    assert store.assign(taken[0], lease_s=30, version="1")

    result = OutputManifest(
        job=first.job_id, model="m", version="1", sha256="0" * 64, input="in/f000.csv", format="csv",
        output="out/f000.csv", parts=[], rows=10, bad_rows=0,
    )  # fmt: skip
    jobs.succeed(first.job_id, result)
    (ended,) = store.ended_jobs()
    assert ended.job_status == "succeeded" and ended.job_rows == 10
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        settled = list(pool.map(lambda _: store.done(ended.file, rows=10), range(4)))
    assert settled.count(True) == 1
    (done,) = store.files("w", "done", 10)
    assert (done.output_location, done.rows, done.version) == ("out/f000.csv", 10, "1")
    watch = store.watch("w")
    assert watch is not None and watch.spec == SPEC and watch.paused is False
    assert store.delete("w") and store.watch("w") is None and store.counts() == {}


def test_thousands_of_new_files_are_recorded_in_one_listing(url: str) -> None:
    store, _ = _stores(url)
    store.create(SPEC)
    assert store.record("w", [FileEntry(f"f{i:05d}.csv", 1, "1:1") for i in range(12_000)]) == 12_000
