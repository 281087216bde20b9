"""The job store for the event loop: each statement in a worker thread, never on the loop itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

from inferrer.jobs.records import Claim, Job, JobResult, NewJob, Partition, PartOutput
from inferrer.jobs.store import JobStore
from wire.job_answers import JobStatus, RowError

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`call` in a worker thread: the store's (and storage's) blocking work, off the event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)


class AsyncJobStore:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def create(self, job: NewJob) -> None:
        await off_loop(self._store.create, job)

    async def claim(self, limit: int, lease_s: float, fleet_limit: int) -> list[Claim]:
        return await off_loop(self._store.claim, limit, lease_s, None, fleet_limit)

    async def renew(self, claims: list[Claim], lease_s: float) -> None:
        await off_loop(self._store.renew, claims, lease_s)

    async def complete(
        self, claim: Claim, output: PartOutput, node: str, errors: list[tuple[int, str]]
    ) -> bool:
        return await off_loop(self._store.complete, claim.job_id, claim.idx, output, node, errors)

    async def release(self, claim: Claim, error: str, retry_after_s: float | None) -> bool:
        return await off_loop(self._store.release, claim, error, retry_after_s)

    async def succeed(self, job_id: str, result: JobResult) -> bool:
        return await off_loop(self._store.succeed, job_id, result)

    async def end(self, job_id: str, status: Literal["failed", "cancelled"], error: str) -> bool:
        return await off_loop(self._store.end, job_id, status, error)

    async def note(self, job_id: str, error: str) -> None:
        await off_loop(self._store.note, job_id, error)

    async def job(self, job_id: str) -> Job | None:
        return await off_loop(self._store.job, job_id)

    async def partitions_of(self, job_id: str) -> list[Partition]:
        return await off_loop(self._store.partitions_of, job_id)

    async def errors_of(self, job_id: str, limit: int) -> list[RowError]:
        return await off_loop(self._store.errors_of, job_id, limit)

    async def listing(self, status: JobStatus | None, limit: int) -> list[Job]:
        return await off_loop(self._store.listing, status, limit)

    async def counts(self) -> dict[str, int]:
        return await off_loop(self._store.counts)

    async def partitions_waiting(self) -> int:
        return await off_loop(self._store.partitions_waiting)

    async def overdue(self) -> list[str]:
        return await off_loop(self._store.overdue)

    async def stranded(self) -> tuple[list[str], list[str]]:
        return await off_loop(self._store.stranded)
