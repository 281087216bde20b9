"""The job store: jobs, their partitions and their bad rows, in one SQL database by URL.

SQLite (WAL) in the data directory by default; the same statements run on PostgreSQL
(`postgresql+psycopg://...`), which several gateways can share. Every state change is one
transaction, and the rules that make fan-in safe live in the statements themselves:

- a partition is claimed by moving it from `pending` to `running` with a lease; a claim that lapses
  (its gateway died) makes it claimable again, so nothing waits forever on a dead gateway;
- a partition is completed at most once (`status <> 'done'` in the UPDATE): a duplicate completion
  changes nothing, and only the completion that leaves no partition undone reports `last`, which
  tells its caller to finalise the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inferrer.errors import OutputExists
from inferrer.jobs.records import (
    UNFINISHED,
    Claim,
    FilePlan,
    Job,
    JobResult,
    NewJob,
    Partition,
    PartOutput,
    Span,
)
from inferrer.jobs.schema import CLAIM_PARTITIONS, WRITE, jobs, one_at_a_time, partitions, row_errors
from wire.job_answers import JobStatus, RowError


class JobStore:
    """The store's statements, each run in the calling thread (the event loop's callers go through
    store_async.AsyncJobStore)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.execution_options(**{WRITE: True}).begin() as connection:
            yield connection

    def create(self, job: NewJob) -> None:
        """A job and its partitions, all pending, in one transaction."""
        location = job.plan.output_location if isinstance(job.plan, FilePlan) else None
        try:
            with self._transaction() as db:
                db.execute(
                    jobs.insert().values(
                        id=job.id, status="queued", model=job.model, version=job.version,
                        spec=job.plan.model_dump(mode="json"), output_location=location,
                        partitions_total=len(job.spans), created=job.created, deadline=job.deadline,
                    )
                )  # fmt: skip
                if job.spans:
                    db.execute(
                        partitions.insert(),
                        [
                            {"job_id": job.id, "idx": i, "spec": span.model_dump(exclude_defaults=True),
                             "status": "pending", "attempts": 0, "not_before": 0.0}
                            for i, span in enumerate(job.spans)
                        ],
                    )  # fmt: skip
        except sa.exc.IntegrityError:
            raise OutputExists(f"{location!r} is another job's output location") from None

    def claim(
        self, limit: int, lease_s: float, now: float | None = None, fleet_limit: int | None = None
    ) -> list[Claim]:
        """Up to `limit` partitions of running or queued jobs that are pending and due, or whose
        claim lapsed, each now `running` under a lease, oldest jobs first; with `fleet_limit`, no
        more than that many running under a live lease in all (every gateway counted)."""
        now = time.time() if now is None else now
        due = sa.or_(
            sa.and_(partitions.c.status == "pending", partitions.c.not_before <= now),
            sa.and_(partitions.c.status == "running", partitions.c.lease_until < now),
        )
        chosen = (
            sa.select(partitions.c.job_id, partitions.c.idx)
            .join(jobs, jobs.c.id == partitions.c.job_id)
            .where(jobs.c.status.in_(UNFINISHED), due)
            .order_by(jobs.c.created, partitions.c.idx)
            .limit(limit)
            # PostgreSQL: rows another claimer holds are passed over, not waited for (SQLite
            # ignores it: its transactions run one at a time).
            .with_for_update(of=partitions, skip_locked=True)
        )
        # The UPDATE re-checks `due`: concurrent claimers (threads, gateways) never both take one.
        with self._transaction() as db:
            if fleet_limit is not None:
                one_at_a_time(db, CLAIM_PARTITIONS)
                running = db.execute(
                    sa.select(sa.func.count())
                    .select_from(partitions)
                    .where(partitions.c.status == "running", partitions.c.lease_until >= now)
                ).scalar_one()
                limit = min(limit, fleet_limit - running)
                if limit <= 0:
                    return []
                chosen = chosen.limit(limit)
            # Chosen once (a materialised CTE): a subquery in the UPDATE's WHERE may run again for
            # rows it meets, and with SKIP LOCKED pick others each time, past the LIMIT.
            picked = chosen.cte("picked").prefix_with("MATERIALIZED")
            keys = sa.select(picked.c.job_id, picked.c.idx)
            claimed = [
                Claim(job_id, idx, Span.model_validate(spec), attempts)
                for job_id, idx, spec, attempts in db.execute(
                    partitions.update()
                    .where(sa.tuple_(partitions.c.job_id, partitions.c.idx).in_(keys), due)
                    .values(status="running", attempts=partitions.c.attempts + 1, lease_until=now + lease_s)
                    .returning(*(partitions.c[k] for k in ("job_id", "idx", "spec", "attempts")))
                ).all()
            ]
            started = {claim.job_id for claim in claimed}
            if started:
                db.execute(
                    jobs.update()
                    .where(jobs.c.id.in_(started), jobs.c.status == "queued")
                    .values(status="running", started=now)
                )
        return sorted(claimed, key=lambda c: (c.job_id, c.idx))

    def complete(
        self, job_id: str, idx: int, output: PartOutput, node: str, errors: list[tuple[int, str]]
    ) -> bool:
        """Record a partition's result once. True when this completion left no partition undone:
        the caller then finalises the job. A duplicate completion changes nothing and returns False."""
        with self._transaction() as db:
            # One completion of a job at a time (the job's row locked; SQLite: its write lock), so
            # that two last completions never both count the other as undone.
            db.execute(sa.select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
            first = db.execute(
                partitions.update()
                .where(partitions.c.job_id == job_id, partitions.c.idx == idx, partitions.c.status != "done")
                .values(
                    status="done", output=output.model_dump(mode="json", exclude_none=True), node=node,
                    rows_done=output.rows,
                    rows_failed=len(errors), lease_until=None, error=None,
                )
            ).rowcount  # fmt: skip
            if not first:
                return False
            if errors:
                db.execute(
                    row_errors.insert(),
                    [
                        {"job_id": job_id, "partition": idx, "line": line, "reason": reason}
                        for line, reason in errors
                    ],
                )
            undone = db.execute(
                sa.select(sa.func.count())
                .select_from(partitions)
                .where(partitions.c.job_id == job_id, partitions.c.status != "done")
            ).scalar_one()
            return undone == 0

    def renew(self, claims: list[Claim], lease_s: float) -> None:
        """Extend the lease of partitions still running here (a heartbeat while nodes work)."""
        if not claims:
            return
        keys = [(c.job_id, c.idx) for c in claims]
        with self._transaction() as db:
            db.execute(
                partitions.update()
                .where(
                    sa.tuple_(partitions.c.job_id, partitions.c.idx).in_(keys),
                    partitions.c.status == "running",
                )
                .values(lease_until=time.time() + lease_s)
            )

    def stranded(self) -> tuple[list[str], list[str]]:
        """Unfinished jobs whose partitions are all done (to finalise), and those with a partition
        failed for good (to fail): what a gateway that died between two steps left."""
        undone = sa.select(partitions.c.job_id).where(partitions.c.status != "done")
        failed = sa.select(partitions.c.job_id).where(partitions.c.status == "failed")
        unfinished = jobs.c.status.in_(UNFINISHED)
        with self.engine.connect() as db:
            complete = db.execute(sa.select(jobs.c.id).where(unfinished, jobs.c.id.not_in(undone))).scalars()
            broken = db.execute(sa.select(jobs.c.id).where(unfinished, jobs.c.id.in_(failed))).scalars()
            return list(complete), list(broken)

    def release(self, claim: Claim, error: str, retry_after_s: float | None) -> bool:
        """A claimed attempt failed: the partition is pending again after `retry_after_s`, or failed
        for good (None). Only the current claim counts: one that lapsed and was taken again by
        another attempt, or a partition done meanwhile, changes nothing (False)."""
        not_before: sa.ColumnElement[float] | float = partitions.c.not_before  # failed: as it was
        status = "failed" if retry_after_s is None else "pending"
        if retry_after_s is not None:
            not_before = time.time() + retry_after_s
        with self._transaction() as db:
            return bool(
                db.execute(
                    partitions.update()
                    .where(
                        partitions.c.job_id == claim.job_id,
                        partitions.c.idx == claim.idx,
                        partitions.c.status == "running",
                        partitions.c.attempts == claim.attempt,
                    )
                    .values(status=status, not_before=not_before, error=error, lease_until=None)
                ).rowcount
            )

    def succeed(self, job_id: str, result: JobResult) -> bool:
        """An unfinished job succeeded, with its result, once; False when it had finished already."""
        return self._finish(job_id, "succeeded", result.model_dump(mode="json", exclude_none=True), None)

    def end(self, job_id: str, status: Literal["failed", "cancelled"], error: str) -> bool:
        """An unfinished job failed or was cancelled, once; False when it had finished already."""
        return self._finish(job_id, status, None, error)

    def _finish(self, job_id: str, status: JobStatus, stored: object, error: str | None) -> bool:
        with self._transaction() as db:
            return bool(
                db.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.status.in_(UNFINISHED))
                    .values(status=status, result=stored, error=error, finished=time.time())
                ).rowcount
            )

    def note(self, job_id: str, error: str) -> None:
        """Why an unfinished job is held up (its output cannot be written yet)."""
        with self._transaction() as db:
            db.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(UNFINISHED)).values(error=error)
            )

    def job(self, job_id: str) -> Job | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            return Job.from_row(row) if row else None

    def partitions_of(self, job_id: str) -> list[Partition]:
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(partitions).where(partitions.c.job_id == job_id).order_by(partitions.c.idx)
            ).mappings()
            return [Partition.from_row(row) for row in rows]

    def errors_of(self, job_id: str, limit: int = 1000) -> list[RowError]:
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(row_errors.c.partition, row_errors.c.line, row_errors.c.reason)
                .where(row_errors.c.job_id == job_id)
                .order_by(row_errors.c.line)
                .limit(limit)
            ).mappings()
            return [RowError.model_validate(row) for row in rows]

    def listing(self, status: JobStatus | None, limit: int) -> list[Job]:
        query = sa.select(jobs).order_by(jobs.c.created.desc()).limit(limit)
        if status is not None:
            query = query.where(jobs.c.status == status)
        with self.engine.connect() as db:
            return [Job.from_row(row) for row in db.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
            return {status: count for status, count in rows}

    def partitions_waiting(self) -> int:
        """Partitions of unfinished jobs not done yet (queued, backing off or under way)."""
        query = (
            sa.select(sa.func.count())
            .select_from(partitions.join(jobs, jobs.c.id == partitions.c.job_id))
            .where(jobs.c.status.in_(UNFINISHED), partitions.c.status.in_(("pending", "running")))
        )
        with self.engine.connect() as db:
            return int(db.execute(query).scalar() or 0)

    def overdue(self, now: float | None = None) -> list[str]:
        """Unfinished jobs past their deadline."""
        now = time.time() if now is None else now
        with self.engine.connect() as db:
            return list(
                db.execute(
                    sa.select(jobs.c.id).where(jobs.c.status.in_(UNFINISHED), jobs.c.deadline < now)
                ).scalars()
            )
