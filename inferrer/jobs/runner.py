"""Runs the jobs in the store: claims partitions (never more than JOBS_MAX_IN_FLIGHT running across
the fleet), sends each through nginx to a node, records what came back, and finalises a job when
its last partition is done.

Nothing is kept only in memory: a claim is a lease in the store, renewed while the node works, so a
gateway killed mid-job leaves leases that lapse, and the restarted one (or another gateway) claims
those partitions again; a completion is recorded once; a job whose partitions are all done but that
was never finalised is finalised by the next sweep. A partition that fails for a node's reason
(unreachable, died, timed out) is retried with backoff up to the job's max_attempts; one refused
for its data (bad rows, a missing file) fails the job at once, naming why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifacts.schema import ModelSchema
from datafiles.locations import Storage
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.prediction import PredictionService
from inferrer.errors import InferrerError, InvalidInput, ModelNotFound
from inferrer.jobs.outputs import OutputNotVerified, success_marker, write_outputs
from inferrer.jobs.schema import UNFINISHED
from inferrer.jobs.store import Claim, JobStore
from inferrer.jobs.submission import inline_body, output_format
from inferrer.state.repository import ModelRepository
from metrics.definitions import JobMetrics
from wire.errors import NodeRefusal
from wire.partition_calls import PartitionCall, PartitionDone

logger = logging.getLogger(__name__)

# An inline job's body as the predict route parses it: (rows, output). Given by the app, which
# owns the REST codec; raises InvalidInput for rows the model cannot take.
InlineParser = Callable[[bytes, ModelSchema], tuple[np.ndarray, str]]

_SWEEP_S = 2.0
_RETRY_BASE_S = 0.5
_FINALIZE_TRIES = 5


@dataclass(frozen=True)
class RunnerLimits:
    max_in_flight: int  # partitions running at once, fleet-wide
    lease_s: float  # a claim lapses this long after its last renewal
    partition_timeout_s: float  # one node call
    poll_s: float = 0.5


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        repository: ModelRepository,
        storage: Storage,
        upstream: Upstream,
        prediction: PredictionService,
        parse_inline: InlineParser,
        limits: RunnerLimits,
        metrics: JobMetrics,
    ) -> None:
        self.store = store
        self.repository = repository
        self.storage = storage
        self.upstream = upstream
        self.prediction = prediction
        self.parse_inline = parse_inline
        self.limits = limits
        self.metrics = metrics
        self._running: dict[tuple[str, int], Claim] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._finish_listeners: list[Callable[[], None]] = []
        self._finalizing: set[str] = set()  # jobs whose outputs this process is writing
        self._finalize_failures: dict[str, int] = {}

    def on_finish(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the event loop) whenever this process finishes a job."""
        self._finish_listeners.append(listener)

    def wake(self) -> None:
        """A job was submitted or a slot freed: claim now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        next_sweep = next_renewal = 0.0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + _SWEEP_S
                    await self._sweep()
                if now >= next_renewal and self._running:
                    next_renewal = now + self.limits.lease_s / 3
                    await asyncio.to_thread(
                        self.store.renew, list(self._running.values()), self.limits.lease_s
                    )
                await self._claim()
            except Exception:
                logger.exception("the job runner's step failed; it goes on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.poll_s)
            self._wake.clear()

    async def _claim(self) -> None:
        room = self.limits.max_in_flight - len(self._running)
        if room <= 0:
            return
        claims = await asyncio.to_thread(
            self.store.claim, room, self.limits.lease_s, None, self.limits.max_in_flight
        )
        for claim in claims:
            self._running[(claim.job_id, claim.idx)] = claim
            self._spawn(self._run(claim), f"{claim.job_id}/{claim.idx}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, claim: Claim) -> None:
        try:
            job = await asyncio.to_thread(self.store.job, claim.job_id)
            if job is None or job["status"] not in UNFINISHED:
                return  # cancelled or failed meanwhile: nothing more is sent
            if job["spec"]["kind"] == "inline":
                await self._run_inline(job, claim)
            else:
                await self._run_partition(job, claim)
        except Exception as exc:
            logger.exception("partition %s/%s failed unexpectedly", claim.job_id, claim.idx)
            await self._retry_or_fail(claim, f"the gateway failed: {exc!r}")
        finally:
            self._running.pop((claim.job_id, claim.idx), None)
            self._wake.set()

    async def _run_inline(self, job: dict[str, Any], claim: Claim) -> None:
        try:
            manifest = self.repository.get(job["model"], job["version"])
            rows, output_kind = self.parse_inline(inline_body(job["spec"]), manifest.signature)
            result = await self.prediction.predict(manifest, rows, [output_kind])
        except (InvalidInput, ModelNotFound) as exc:
            await self._fail(claim, exc.message)
            return
        except InferrerError as exc:
            await self._retry_or_fail(claim, exc.message)
            return
        predictions = result.outputs[output_kind]
        # The answer is kept with the completion itself: a gateway killed right after loses nothing.
        answer = {"model": job["model"], "version": result.version, "predictions": predictions}
        output = {"rows": len(predictions), "answer": {**answer, "node": result.node}}
        self.metrics.partitions.labels("done").inc()
        self.metrics.rows.inc(len(predictions))
        if await asyncio.to_thread(self.store.complete, claim.job_id, 0, output, result.node, []):
            await self._finalize_or_leave(claim.job_id)

    async def _run_partition(self, job: dict[str, Any], claim: Claim) -> None:
        spec = job["spec"]
        out = spec["output_location"]
        call = PartitionCall(
            job_id=job["id"], partition=claim.idx, model=job["model"], version=job["version"],
            sha256=spec["sha256"], output=spec["output"], input=spec["input"], format=spec["format"],
            start=claim.spec.get("start", 0), end=claim.spec.get("end", 0),
            row_group=claim.spec.get("row_group", 0), header=spec["header"],
            output_part=f"{out}/part-{claim.idx:05d}.{output_format(spec)}",
            output_format=spec.get("output_format"),
            errors_part=f"{out}/_errors/part-{claim.idx:05d}.jsonl", on_bad_rows=spec["on_bad_rows"],
        )  # fmt: skip
        try:
            answer = await self.upstream.request(
                "POST",
                "/internal/v1/partitions",
                call.model_dump_json(exclude_defaults=True).encode(),  # a node a release older: no new fields
                self.limits.partition_timeout_s,
            )
        except InferrerError as exc:  # nginx unreachable, no node, timed out
            await self._retry_or_fail(claim, exc.message)
            return
        if answer.status_code != 200:
            refusal = NodeRefusal.read(answer.status_code, answer.content)
            if refusal.retry:
                await self._retry_or_fail(claim, f"{answer.node or 'the balancer'}: {refusal.reason}")
            else:  # refused for its data: another attempt would be refused too
                await self._fail(claim, f"partition {claim.idx}: {refusal.reason}")
            return
        done = PartitionDone.model_validate_json(answer.content)
        output = {"location": call.output_part, "rows": done.rows, "sha256": done.sha256, "node": done.node}
        errors = [(bad.line, bad.reason) for bad in done.bad_rows]
        self.metrics.partitions.labels("done").inc()
        self.metrics.rows.inc(done.rows)
        if await asyncio.to_thread(self.store.complete, claim.job_id, claim.idx, output, done.node, errors):
            await self._finalize_or_leave(claim.job_id)

    async def _retry_or_fail(self, claim: Claim, reason: str) -> None:
        job = await asyncio.to_thread(self.store.job, claim.job_id)
        attempts_allowed = int(job["spec"].get("max_attempts", 3)) if job else 1
        if claim.attempt >= attempts_allowed:
            await self._fail(claim, f"partition {claim.idx} failed {claim.attempt} times, last: {reason}")
            return
        backoff = _RETRY_BASE_S * 2 ** (claim.attempt - 1)
        self.metrics.partitions.labels("retried").inc()
        logger.warning("partition %s/%s: %s; retrying in %.1fs", claim.job_id, claim.idx, reason, backoff)
        await asyncio.to_thread(self.store.release, claim, reason, backoff)

    async def _fail(self, claim: Claim, reason: str) -> None:
        if not await asyncio.to_thread(self.store.release, claim, reason, None):
            return  # the claim had lapsed and was taken again: that attempt decides
        self.metrics.partitions.labels("failed").inc()
        job = await asyncio.to_thread(self.store.job, claim.job_id)
        if job is not None:
            await self._finish(job, "failed", error=reason)

    async def _finalize_or_leave(self, job_id: str) -> None:
        """Every partition is done: finalise, once at a time per job in this process. A failure to
        write the output (storage down) is the sweep's to retry, and the job shows why meanwhile;
        after `_FINALIZE_TRIES` failures, or an output that does not hold its rows, the job fails."""
        if job_id in self._finalizing:
            return
        self._finalizing.add(job_id)
        try:
            await self._finalize(job_id)
            self._finalize_failures.pop(job_id, None)
        except Exception as exc:
            failures = self._finalize_failures[job_id] = self._finalize_failures.get(job_id, 0) + 1
            logger.warning("job %s: writing the output failed (%d): %s", job_id, failures, exc)
            reason = f"writing the output failed {failures} times, last: {exc}"
            job = await asyncio.to_thread(self.store.job, job_id)
            if job is not None and (failures >= _FINALIZE_TRIES or isinstance(exc, OutputNotVerified)):
                self._finalize_failures.pop(job_id, None)
                await self._finish(job, "failed", error=reason)
            else:
                await asyncio.to_thread(self.store.note, job_id, f"{reason}; retrying")
        finally:
            self._finalizing.discard(job_id)

    async def _finalize(self, job_id: str) -> None:
        """All partitions done: the outputs (jobs.outputs), then the job succeeded. Safe to repeat
        (a gateway that died half-way): each file is written whole, and the job finishes once."""
        job = await asyncio.to_thread(self.store.job, job_id)
        if job is None or job["status"] not in UNFINISHED:
            return
        parts = await asyncio.to_thread(self.store.partitions_of, job_id)
        if job["spec"]["kind"] == "inline":
            await self._finish(job, "succeeded", result=parts[0]["output"]["answer"])
            return
        result = await asyncio.to_thread(write_outputs, self.storage, job, parts)
        if not await self._finish(job, "succeeded", result=result):  # cancelled or overdue meanwhile
            await asyncio.to_thread(self.storage.remove, success_marker(self.storage, job))

    async def _finish(
        self, job: dict[str, Any], status: str, result: Any = None, error: str | None = None
    ) -> bool:
        """True when this call finished the job (False: it had finished already)."""
        finished = await asyncio.to_thread(self.store.finish, job["id"], status, result, error)
        if finished:
            logger.info("job %s %s%s", job["id"], status, f": {error}" if error else "")
            self.metrics.finished.labels(status).inc()
            self.metrics.duration.observe(time.time() - job["created"])
            for listener in self._finish_listeners:
                listener()
        await asyncio.to_thread(self.repository.unpin, job["model"], job["version"], job["id"])
        return finished

    async def _sweep(self) -> None:
        """Deadlines, and what a gateway that died between two steps left behind; the job gauge."""
        counts = await asyncio.to_thread(self.store.counts)
        for status in (*UNFINISHED, "succeeded", "failed", "cancelled"):
            self.metrics.jobs.labels(status).set(counts.get(status, 0))
        for job_id in await asyncio.to_thread(self.store.overdue):
            job = await asyncio.to_thread(self.store.job, job_id)
            if job is not None:
                await self._finish(job, "failed", error="the job's deadline passed")
        complete, broken = await asyncio.to_thread(self.store.stranded)
        for job_id in complete:  # in the background: writing a large output takes a while
            if job_id not in self._finalizing:
                self._spawn(self._finalize_or_leave(job_id), f"{job_id}/finalise")
        for job_id in broken:
            job = await asyncio.to_thread(self.store.job, job_id)
            parts = await asyncio.to_thread(self.store.partitions_of, job_id)
            reason = next((p["error"] for p in parts if p["status"] == "failed"), "a partition failed")
            if job is not None:
                await self._finish(job, "failed", error=reason)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop claiming and abandon the partitions under way: their leases lapse, and a gateway
        claims them again. (A flag, not only a cancel: Python 3.11's wait_for can swallow a cancel
        that meets a wake-up.)"""
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
