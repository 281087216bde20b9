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
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.prediction import PredictionService
from inferrer.errors import GraphNotFound, InferrerError, InvalidInput, ModelNotFound
from inferrer.graphs.service import GraphService
from inferrer.jobs.finishing import JobFinisher
from inferrer.jobs.records import Claim, FilePlan, InlinePlan, Job, PartOutput
from inferrer.jobs.store_async import AsyncJobStore
from inferrer.state.repository import ModelRepository
from metrics.definitions import JobMetrics
from wire import tracing
from wire.errors import NodeRefusal
from wire.job_answers import InlineResult
from wire.partition_calls import PartitionCall, PartitionDone

logger = logging.getLogger(__name__)

# An inline job's body as the predict route parses it: (rows, output). Given by the app, which
# owns the REST codec; raises InvalidInput for rows the model cannot take.
InlineParser = Callable[[bytes, ModelSchema], tuple[np.ndarray, str]]

_SWEEP_S = 2.0
_RETRY_BASE_S = 0.5


@dataclass(frozen=True)
class RunnerLimits:
    max_in_flight: int  # partitions running at once, fleet-wide
    lease_s: float  # a claim lapses this long after its last renewal
    partition_timeout_s: float  # one node call
    poll_s: float = 0.5
    # The most online predictions this gateway had in flight at once lately: it claims that many
    # partitions fewer (at least 1), so a job leaves the nodes' cores to online traffic.
    online_in_flight: Callable[[], int] = lambda: 0

    def in_flight_now(self) -> int:
        return max(1, self.max_in_flight - self.online_in_flight())


class JobRunner:
    def __init__(
        self,
        store: AsyncJobStore,
        finisher: JobFinisher,
        repository: ModelRepository,
        upstream: Upstream,
        prediction: PredictionService,
        parse_inline: InlineParser,
        limits: RunnerLimits,
        metrics: JobMetrics,
        graphs: GraphService,
    ) -> None:
        self.graphs = graphs
        self.store = store
        self.finisher = finisher
        self.repository = repository
        self.upstream = upstream
        self.prediction = prediction
        self.parse_inline = parse_inline
        self.limits = limits
        self.metrics = metrics
        self._running: dict[tuple[str, int], Claim] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """A job was submitted or a slot freed: claim now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        next_sweep = next_renewal = 0.0
        idle_polls = 0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + _SWEEP_S
                    await self.finisher.sweep(self._spawn)
                if now >= next_renewal and self._running:
                    next_renewal = now + self.limits.lease_s / 3
                    await self.store.renew(list(self._running.values()), self.limits.lease_s)
                claimed = await self._claim()
                idle_polls = 0 if claimed or self._running else idle_polls + 1
            except Exception:
                logger.exception("the job runner's step failed; it goes on")
            # Idle, the store is asked less often (up to every _SWEEP_S): this process's own
            # submissions and freed slots wake it at once; other gateways' work waits that long.
            pause = min(self.limits.poll_s * (1 + idle_polls), max(self.limits.poll_s, _SWEEP_S))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def _claim(self) -> int:
        room = self.limits.in_flight_now() - len(self._running)  # this gateway's share, now
        if room <= 0:
            return 0
        claims = await self.store.claim(room, self.limits.lease_s, self.limits.max_in_flight)
        for claim in claims:
            self._running[(claim.job_id, claim.idx)] = claim
            self._spawn(self._run(claim), f"{claim.job_id}/{claim.idx}")
        return len(claims)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, claim: Claim) -> None:
        job = None
        try:
            job = await self.store.job(claim.job_id)
            if job is None or not job.unfinished:
                return  # cancelled or failed meanwhile: nothing more is sent
            attributes = {
                "modelfleet.job": job.id,
                "modelfleet.partition": claim.idx,
                "modelfleet.attempt": claim.attempt,
            }
            with tracing.span(
                f"partition {claim.idx}", attributes, parent=tracing.context_of(job.plan.traceparent)
            ):
                if isinstance(job.plan, InlinePlan):
                    await self._run_inline(job, job.plan, claim)
                else:
                    await self._run_partition(job, job.plan, claim)
        except Exception as exc:
            logger.exception("partition %s/%s failed unexpectedly", claim.job_id, claim.idx)
            job = job or await self.store.job(claim.job_id)
            await self._retry_or_fail(job, claim, f"the gateway failed: {exc!r}")
        finally:
            self._running.pop((claim.job_id, claim.idx), None)
            self._wake.set()

    async def _run_inline(self, job: Job, plan: InlinePlan, claim: Claim) -> None:
        if plan.graph is not None and plan.graph_version is not None:
            await self._run_inline_graph(job, plan, claim, plan.graph, plan.graph_version)
            return
        try:
            manifest = self.repository.get(job.model, job.version)
            rows, output_kind = self.parse_inline(plan.body(), manifest.signature)
            result = await self.prediction.predict(manifest, rows, [output_kind])
        except (InvalidInput, ModelNotFound) as exc:
            await self._fail(claim, exc.message)
            return
        except InferrerError as exc:
            await self._retry_or_fail(job, claim, exc.message)
            return
        predictions = result.outputs[output_kind]
        # The answer is kept with the completion itself: a gateway killed right after loses nothing.
        answer = InlineResult(
            model=job.model, version=result.version, predictions=predictions, node=result.node
        )
        await self._complete(claim, PartOutput(rows=len(predictions), answer=answer), result.node, [])

    async def _run_inline_graph(
        self, job: Job, plan: InlinePlan, claim: Claim, name: str, version: str
    ) -> None:
        try:
            graph = await self.graphs.deployed(name, version)
            reader = self.repository.get(job.model, job.version)
            rows, _ = self.parse_inline(plan.body(), reader.signature)
            answer = await self.graphs.predict(graph, rows)
        except (InvalidInput, ModelNotFound, GraphNotFound) as exc:
            await self._fail(claim, exc.message)
            return
        except InferrerError as exc:  # a step's failure: its status says whether to try again
            if exc.status_code < 500:
                await self._fail(claim, exc.message)
            else:
                await self._retry_or_fail(job, claim, exc.message)
            return
        result = InlineResult(model=name, version=version, predictions=answer.predictions, node="graph")
        await self._complete(claim, PartOutput(rows=len(answer.predictions), answer=result), "graph", [])

    async def _run_partition(self, job: Job, plan: FilePlan, claim: Claim) -> None:
        out, span = plan.output_location, claim.span
        call = PartitionCall(
            job_id=job.id, partition=claim.idx, model=job.model, version=job.version, sha256=plan.sha256,
            output=plan.prediction, input=plan.input, format=plan.format, start=span.start, end=span.end,
            row_group=span.row_group, header=plan.header,
            output_part=f"{out}/part-{claim.idx:05d}.{plan.out_format}", output_format=plan.output_format,
            errors_part=f"{out}/_errors/part-{claim.idx:05d}.jsonl", on_bad_rows=plan.on_bad_rows,
            graph=plan.graph, graph_version=plan.graph_version,
        )  # fmt: skip
        try:
            answer = await self.upstream.request(
                "POST",
                "/internal/v1/partitions",
                call.model_dump_json(exclude_defaults=True).encode(),  # a node a release older: no new fields
                self.limits.partition_timeout_s,
            )
        except InferrerError as exc:  # nginx unreachable, no node, timed out
            await self._retry_or_fail(job, claim, exc.message)
            return
        if answer.status_code != 200:
            refusal = NodeRefusal.read(answer.status_code, answer.content)
            if refusal.retry:
                await self._retry_or_fail(job, claim, f"{answer.node or 'the balancer'}: {refusal.reason}")
            else:  # refused for its data: another attempt would be refused too
                await self._fail(claim, f"partition {claim.idx}: {refusal.reason}")
            return
        done = PartitionDone.model_validate_json(answer.content)
        output = PartOutput(
            location=call.output_part, rows=done.rows, sha256=done.sha256, node=done.node,
            attempt=claim.attempt,
        )  # fmt: skip
        await self._complete(claim, output, done.node, [(bad.line, bad.reason) for bad in done.bad_rows])

    async def _complete(
        self, claim: Claim, output: PartOutput, node: str, errors: list[tuple[int, str]]
    ) -> None:
        self.metrics.partitions.labels("done").inc()
        self.metrics.rows.inc(output.rows)
        if await self.store.complete(claim, output, node, errors):
            await self.finisher.finalize_or_leave(claim.job_id)

    async def _retry_or_fail(self, job: Job | None, claim: Claim, reason: str) -> None:
        attempts_allowed = job.plan.max_attempts if job else 1
        if claim.attempt >= attempts_allowed:
            await self._fail(claim, f"partition {claim.idx} failed {claim.attempt} times, last: {reason}")
            return
        backoff = _RETRY_BASE_S * 2 ** (claim.attempt - 1)
        self.metrics.partitions.labels("retried").inc()
        logger.warning("partition %s/%s: %s; retrying in %.1fs", claim.job_id, claim.idx, reason, backoff)
        await self.store.release(claim, reason, backoff)

    async def _fail(self, claim: Claim, reason: str) -> None:
        if not await self.store.release(claim, reason, None):
            return  # the claim had lapsed and was taken again: that attempt decides
        self.metrics.partitions.labels("failed").inc()
        await self.finisher.fail(claim.job_id, reason)

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
