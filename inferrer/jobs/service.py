"""What the job routes do: submit (check, pin, plan, store), show, list, cancel, and the result."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import overload

from inferrer.errors import JobNotFinished, JobNotFound
from inferrer.graphs.service import GraphService
from inferrer.jobs.files import BinaryReader, JobFiles
from inferrer.jobs.planning import inline_job
from inferrer.jobs.records import FilePlan, Job, Partition
from inferrer.jobs.runner import JobRunner
from inferrer.jobs.store_async import AsyncJobStore
from inferrer.jobs.submission import JobSubmission, new_job_id
from inferrer.jobs.targets import resolve_target
from inferrer.state.pins import Pin
from inferrer.state.repository import ModelRepository
from wire.job_answers import (
    InlineResult,
    JobAccepted,
    JobList,
    JobOutput,
    JobStatus,
    JobView,
    PartitionCounts,
    RowCounts,
    RowError,
)

_ERRORS_SHOWN = 100


class JobService:
    def __init__(
        self,
        store: AsyncJobStore,
        files: JobFiles,
        repository: ModelRepository,
        runner: JobRunner,
        deadline_s: float,
        graphs: GraphService,
    ) -> None:
        self.graphs = graphs
        self.store = store
        self.files = files
        self.repository = repository
        self.runner = runner
        self.deadline_s = deadline_s

    async def keep_upload(self, upload: BinaryReader, submission: JobSubmission) -> None:
        """A multipart job's file, copied whole into the data directory at its `input`."""
        assert submission.input is not None
        await self.files.keep_upload(upload, submission.input)

    async def submit(
        self,
        submission: JobSubmission,
        uploaded: bool = False,
        job_id: str | None = None,
        assemble_to: str | None = None,
    ) -> JobAccepted:
        """Pinned to the version asked for (the active one by default) until the job finishes.
        `uploaded`: its input was uploaded with it, and goes when the submission is refused.
        `job_id`: given by a caller that may ask again (a watch): the job is made once.
        `assemble_to`: the one file its parts are joined into (a watch's output)."""
        try:
            return await self._submit(submission, job_id, assemble_to)
        except BaseException:
            if uploaded and submission.input is not None:
                await self.files.drop_upload(submission.input)
            raise

    async def _submit(
        self, submission: JobSubmission, job_id: str | None, assemble_to: str | None
    ) -> JobAccepted:
        if job_id is not None and (made := await self.store.job(job_id)) is not None:
            return _accepted(made)
        target = await resolve_target(
            self.repository, self.graphs, submission.model, submission.graph, submission.version,
            submission.prediction,
        )  # fmt: skip
        manifest = target.reader
        job_id = job_id or new_job_id()
        # Pinned for as long as the job may run: a gateway killed before the job ends leaves no
        # pin for good.
        pin = Pin(job_id, lease_s=self.deadline_s + 3600)
        await asyncio.to_thread(self.repository.pin, manifest.name, manifest.version, pin)
        try:
            if submission.input is None:
                job = inline_job(job_id, submission, manifest, self.deadline_s)
            else:
                job = await self.files.plan(job_id, submission, manifest, self.deadline_s, assemble_to)
            if target.graph is not None:
                graph = {"graph": target.graph, "graph_version": target.graph_version}
                job = dataclasses.replace(job, plan=job.plan.model_copy(update=graph))
            await self.store.create(job)
        except BaseException as exc:
            made = await self.store.job(job_id) if isinstance(exc, Exception) else None
            if made is not None:  # by another caller with the same id meanwhile: its pin is this one
                return _accepted(made)
            await asyncio.to_thread(self.repository.unpin, manifest.name, manifest.version, job_id)
            raise
        self.runner.wake()
        return JobAccepted(id=job_id, status="queued", partitions=len(job.spans))

    async def find(self, job_id: str) -> Job | None:
        return await self.store.job(job_id)

    async def view(self, job_id: str) -> JobView:
        job = await self._job(job_id)
        parts = await self.store.partitions_of(job_id)
        return _render(job, parts, await self.store.errors_of(job_id, _ERRORS_SHOWN))

    async def listing(self, status: JobStatus | None, limit: int) -> JobList:
        views = []
        for job in await self.store.listing(status, limit):
            views.append(_render(job, await self.store.partitions_of(job.id), []))
        return JobList(jobs=views)

    async def cancel(self, job_id: str) -> JobView:
        """Nothing more is sent; partitions under way finish or are abandoned. Cancelling a finished
        job changes nothing and answers its state."""
        job = await self._job(job_id)
        if await self.store.end(job_id, "cancelled", "cancelled by request"):
            await asyncio.to_thread(self.repository.unpin, job.model, job.version, job_id)
        return await self.view(job_id)

    async def result(self, job_id: str) -> InlineResult | tuple[str, AsyncIterator[bytes]]:
        """An inline job's prediction answer, or a file job's (format, its output's bytes, rows in
        input order)."""
        job = await self._job(job_id)
        if job.status != "succeeded" or job.result is None:
            state = "still " + job.status if job.unfinished else job.status
            raise JobNotFinished(f"job {job_id} is {state}: its result exists once it has succeeded")
        if isinstance(job.result, InlineResult):
            return job.result
        assert isinstance(job.plan, FilePlan)
        fmt = job.plan.out_format
        return fmt, self.files.stream(job.result.parts, fmt)

    async def _job(self, job_id: str) -> Job:
        job = await self.store.job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job


def _accepted(job: Job) -> JobAccepted:
    return JobAccepted(id=job.id, status=job.status, partitions=job.partitions_total)


def _render(job: Job, parts: list[Partition], errors: list[RowError]) -> JobView:
    plan, output = job.plan, None
    if isinstance(plan, FilePlan) and plan.assemble_to is not None:  # a watch's: one file, no manifest
        output = JobOutput(location=plan.assemble_to, manifest=None)
    elif isinstance(plan, FilePlan):
        output = JobOutput(location=plan.output_location, manifest=f"{plan.output_location}/_manifest.json")
    return JobView(
        id=job.id, status=job.status, model=job.model, version=job.version, kind=plan.kind,
        graph=plan.graph, graph_version=plan.graph_version,
        prediction=plan.prediction,
        partitions=PartitionCounts(
            total=job.partitions_total, done=sum(p.status == "done" for p in parts),
            failed=sum(p.status == "failed" for p in parts),
        ),
        rows=RowCounts(
            done=sum(p.rows_done or 0 for p in parts), failed=sum(p.rows_failed or 0 for p in parts)
        ),
        errors=errors, error=job.error, output=output, created=iso_time(job.created),
        started=iso_time(job.started), finished=iso_time(job.finished),
    )  # fmt: skip


@overload
def iso_time(epoch: float) -> str: ...
@overload
def iso_time(epoch: float | None) -> str | None: ...
def iso_time(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()
