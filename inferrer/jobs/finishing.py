"""How a job ends, once: succeeded once its outputs are written (jobs.outputs), or failed (a
partition failed for good, its deadline passed, its outputs could not be written), then unpinned,
counted and announced. The sweep finds what a gateway that died between two steps left behind."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from inferrer.jobs.files import JobFiles
from inferrer.jobs.outputs import OutputNotVerified
from inferrer.jobs.records import UNFINISHED, FilePlan, Job, JobResult
from inferrer.jobs.store_async import AsyncJobStore
from inferrer.state.repository import ModelRepository
from metrics.definitions import JobMetrics
from wire.job_answers import JobStatus

logger = logging.getLogger(__name__)

_FINALIZE_TRIES = 5
Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class JobFinisher:
    def __init__(
        self, store: AsyncJobStore, files: JobFiles, repository: ModelRepository, metrics: JobMetrics
    ) -> None:
        self.store = store
        self.files = files
        self.repository = repository
        self.metrics = metrics
        self._listeners: list[Callable[[], None]] = []
        self._finalizing: set[str] = set()  # jobs whose outputs this process is writing
        self._failures: dict[str, int] = {}

    def on_finish(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the event loop) whenever this process finishes a job."""
        self._listeners.append(listener)

    async def succeed(self, job: Job, result: JobResult) -> bool:
        """True when this call finished the job (False: it had finished already)."""
        return await self._announce(job, "succeeded", await self.store.succeed(job.id, result))

    async def fail(self, job_id: str, reason: str) -> None:
        if (job := await self.store.job(job_id)) is not None:
            await self._announce(job, "failed", await self.store.end(job_id, "failed", reason), reason)

    async def _announce(self, job: Job, status: JobStatus, finished: bool, error: str | None = None) -> bool:
        """Count and announce a job this call finished; unpin it either way."""
        if finished:
            logger.info("job %s %s%s", job.id, status, f": {error}" if error else "")
            self.metrics.finished.labels(status).inc()
            self.metrics.duration.observe(time.time() - job.created)
            for listener in self._listeners:
                listener()
        await asyncio.to_thread(self.repository.unpin, job.model, job.version, job.id)
        return finished

    async def finalize_or_leave(self, job_id: str) -> None:
        """Every partition is done: finalise, once at a time per job in this process. A failure to
        write the output (storage down) is the sweep's to retry, and the job shows why meanwhile;
        after `_FINALIZE_TRIES` failures, or an output that does not hold its rows, the job fails."""
        if job_id in self._finalizing:
            return
        self._finalizing.add(job_id)
        try:
            await self._finalize(job_id)
            self._failures.pop(job_id, None)
        except Exception as exc:
            failures = self._failures[job_id] = self._failures.get(job_id, 0) + 1
            logger.warning("job %s: writing the output failed (%d): %s", job_id, failures, exc)
            reason = f"writing the output failed {failures} times, last: {exc}"
            if failures >= _FINALIZE_TRIES or isinstance(exc, OutputNotVerified):
                self._failures.pop(job_id, None)
                await self.fail(job_id, reason)
            else:
                await self.store.note(job_id, f"{reason}; retrying")
        finally:
            self._finalizing.discard(job_id)

    async def _finalize(self, job_id: str) -> None:
        """All partitions done: the outputs, then the job succeeded. Safe to repeat (a gateway that
        died half-way): each file is written whole, and the job finishes once."""
        job = await self.store.job(job_id)
        if job is None or not job.unfinished:
            return
        parts = await self.store.partitions_of(job_id)
        if not isinstance(job.plan, FilePlan):
            if (output := parts[0].output) is not None and output.answer is not None:
                await self.succeed(job, output.answer)
            return
        result = await self.files.write_outputs(job, job.plan, parts)
        if not await self.succeed(job, result):  # cancelled or overdue meanwhile
            await self.files.withdraw(job.plan)

    async def sweep(self, spawn: Spawn) -> None:
        """Deadlines, and what a gateway that died between two steps left behind; the job gauge."""
        counts = await self.store.counts()
        for status in (*UNFINISHED, "succeeded", "failed", "cancelled"):
            self.metrics.jobs.labels(status).set(counts.get(status, 0))
        for job_id in await self.store.overdue():
            await self.fail(job_id, "the job's deadline passed")
        complete, broken = await self.store.stranded()
        for job_id in complete:  # in the background: writing a large output takes a while
            if job_id not in self._finalizing:
                spawn(self.finalize_or_leave(job_id), f"{job_id}/finalise")
        for job_id in broken:
            parts = await self.store.partitions_of(job_id)
            reason = next((p.error for p in parts if p.status == "failed" and p.error), "a partition failed")
            await self.fail(job_id, reason)
