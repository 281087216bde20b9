"""Watches and the file versions they have seen, in the job store (SQLite or PostgreSQL).

A file version moves `pending` → `running` (a job made for it) → `done` or, after its attempts,
`failed`; a failed job puts it back to `pending` after a backoff while attempts remain. Every move
is one conditional UPDATE, so that of several gateways (or worker processes) exactly one makes it:
one claims a pending file, one records its job's end. A claim is made before its job exists and
names the job's id, with a lease: a gateway killed between the two leaves a claim that lapses, and
the job is then created under that same id, once.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from datafiles.locations import FileEntry
from inferrer.errors import WatchExists
from inferrer.jobs.schema import CLAIM_FILES, WRITE, jobs, one_at_a_time, watch_files, watches
from inferrer.jobs.submission import new_job_id
from inferrer.watches.records import FILE_STATES, EndedFile, FileState, Watch, WatchedFile
from inferrer.watches.spec import WatchSpec

_FINISHED_JOB = ("succeeded", "failed", "cancelled")
_ROWS_PER_INSERT = 500


class WatchStore:
    """The store's statements, each run in the calling thread (the event loop's callers go through
    store_async.AsyncWatchStore)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = engine.execution_options(**{WRITE: True})
        self._specs: dict[tuple[str, float], WatchSpec] = {}  # a watch's spec never changes

    # --- watches

    def create(self, spec: WatchSpec) -> None:
        stored = spec.model_dump(mode="json", exclude_none=True)
        try:
            with self._write.begin() as db:
                db.execute(
                    watches.insert().values(name=spec.name, spec=stored, paused=False, created=time.time())
                )
        except sa.exc.IntegrityError:
            raise WatchExists(
                f"a watch named {spec.name!r} exists: delete it first, or pick another name"
            ) from None

    def watches(self) -> list[Watch]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(watches).order_by(watches.c.name)).mappings().all()
        names = {row["name"] for row in rows}
        self._specs = {key: spec for key, spec in self._specs.items() if key[0] in names}
        return [self._watch(row) for row in rows]

    def watch(self, name: str) -> Watch | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(watches).where(watches.c.name == name)).mappings().first()
        return self._watch(row) if row else None

    def _watch(self, row: Mapping[Any, Any]) -> Watch:
        """The spec validated once per watch (by name and creation) in this process."""
        key = (row["name"], row["created"])
        if (spec := self._specs.get(key)) is None:
            spec = self._specs[key] = WatchSpec.model_validate(row["spec"])
        return Watch(spec=spec, paused=row["paused"], created=row["created"], error=row["error"])

    def set_paused(self, name: str, paused: bool) -> bool:
        with self._write.begin() as db:
            return bool(
                db.execute(watches.update().where(watches.c.name == name).values(paused=paused)).rowcount
            )

    def set_error(self, name: str, error: str | None) -> None:
        with self._write.begin() as db:
            db.execute(
                watches.update()
                .where(watches.c.name == name, watches.c.error.is_distinct_from(error))
                .values(error=error)
            )

    def delete(self, name: str) -> bool:
        """The watch and its history; jobs already made run to their end."""
        with self._write.begin() as db:
            db.execute(watch_files.delete().where(watch_files.c.watch == name))
            return bool(db.execute(watches.delete().where(watches.c.name == name)).rowcount)

    # --- files

    def known(self, watch: str) -> set[tuple[str, str]]:
        """(name, identity) of every file version the watch has recorded."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(watch_files.c.name, watch_files.c.identity).where(watch_files.c.watch == watch)
            )
            return {(name, identity) for name, identity in rows}

    def record(self, watch: str, entries: list[FileEntry]) -> int:
        """New file versions, pending; one already recorded (by any gateway) is left as it is.
        Answers how many were new."""
        now = time.time()
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        added = 0
        for start in range(0, len(entries), _ROWS_PER_INSERT):  # within every database's parameter limit
            rows = [
                {"watch": watch, "name": e.name, "identity": e.identity, "size": e.size, "state": "pending",
                 "attempts": 0, "not_before": 0.0, "seen": now, "updated": now}
                for e in entries[start : start + _ROWS_PER_INSERT]
            ]  # fmt: skip
            insert = dialect.insert(watch_files).values(rows).on_conflict_do_nothing()
            with self._write.begin() as db:
                added += len(db.execute(insert.returning(watch_files.c.id)).all())
        return added

    def claim(self, limit: int, lease_s: float, max_running: int) -> list[WatchedFile]:
        """Up to `limit` due pending files of watches not paused, oldest first, each now `running`
        with a new attempt, its job's id and a claim token, while no more than `max_running` files
        run in all (every gateway)."""
        now = time.time()
        due = sa.and_(watch_files.c.state == "pending", watch_files.c.not_before <= now)
        active = sa.select(watches.c.name).where(watches.c.paused.is_(False))
        running = sa.select(sa.func.count()).select_from(watch_files).where(watch_files.c.state == "running")
        with self.engine.connect() as db:  # most steps find nothing: no write lock taken for that
            waiting = sa.select(watch_files.c.id).where(due, watch_files.c.watch.in_(active)).limit(1)
            if db.execute(waiting).first() is None or db.execute(running).scalar_one() >= max_running:
                return []
        token = uuid.uuid4().hex
        with self._write.begin() as db:
            one_at_a_time(db, CLAIM_FILES)
            room = min(limit, max_running - db.execute(running).scalar_one())
            if room <= 0:
                return []
            picked = (
                sa.select(watch_files.c.id)
                .where(due, watch_files.c.watch.in_(active))
                .order_by(watch_files.c.id)
                .limit(room)
                .with_for_update(of=watch_files, skip_locked=True)
                .cte("picked")
                .prefix_with("MATERIALIZED")
            )
            ids = db.execute(
                watch_files.update()
                .where(watch_files.c.id.in_(sa.select(picked.c.id)), due)
                .values(
                    state="running", attempts=watch_files.c.attempts + 1, submit_until=now + lease_s,
                    claim=token, job_id=None, updated=now,
                )
                .returning(watch_files.c.id)
            ).scalars().all()  # fmt: skip
            for file_id in ids:  # the job's id is fixed with the claim: whoever makes it uses this one
                db.execute(
                    watch_files.update().where(watch_files.c.id == file_id).values(job_id=new_job_id())
                )
            rows = db.execute(
                sa.select(watch_files).where(watch_files.c.id.in_(ids)).order_by(watch_files.c.id)
            )
            return [WatchedFile.from_row(row) for row in rows.mappings()]

    def lapsed(self) -> list[WatchedFile]:
        """Running files whose job was never created: their claimer died (or is far too slow)."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(watch_files).where(
                    watch_files.c.state == "running", watch_files.c.submit_until < time.time()
                )
            ).mappings()
            return [WatchedFile.from_row(row) for row in rows]

    def take_over(self, file: WatchedFile, lease_s: float) -> WatchedFile | None:
        """A lapsed claim, now this gateway's (a new token: the old claimer can change nothing
        more); None when another took it or it moved on."""
        token = uuid.uuid4().hex
        with self._write.begin() as db:
            taken = db.execute(
                watch_files.update()
                .where(watch_files.c.id == file.id, watch_files.c.claim == file.claim,
                       watch_files.c.state == "running", watch_files.c.submit_until.is_not(None))
                .values(submit_until=time.time() + lease_s, claim=token)
            ).rowcount  # fmt: skip
        return dataclasses.replace(file, claim=token) if taken else None

    def assign(
        self, file: WatchedFile, lease_s: float, version: str | None = None, output: str | None = None
    ) -> bool:
        """Fix what the file's attempt uses (version, output location), and renew the claim; False
        when the claim was lost. Raises IntegrityError for an output another file holds."""
        fixed = {key: value for key, value in (("version", version), ("output", output)) if value is not None}
        now = time.time()
        with self._write.begin() as db:
            held = self._claimed(file).values(submit_until=now + lease_s, updated=now, **fixed)
            return bool(db.execute(held).rowcount)

    def submitted(self, file: WatchedFile) -> bool:
        """The file's job exists: its end decides now, whoever claimed it."""
        with self._write.begin() as db:
            return bool(
                db.execute(self._claimed(file).values(submit_until=None, updated=time.time())).rowcount
            )

    def _claimed(self, file: WatchedFile) -> sa.Update:
        return watch_files.update().where(
            watch_files.c.id == file.id, watch_files.c.claim == file.claim,
            watch_files.c.state == "running", watch_files.c.submit_until.is_not(None),
        )  # fmt: skip

    def ended_jobs(self) -> list[EndedFile]:
        """Running files whose job has finished, with its status, result and error."""
        query = (
            sa.select(watch_files, jobs.c.status.label("job_status"), jobs.c.result.label("job_result"),
                      jobs.c.error.label("job_error"))
            .join(jobs, jobs.c.id == watch_files.c.job_id)
            .where(watch_files.c.state == "running", watch_files.c.submit_until.is_(None),
                   jobs.c.status.in_(_FINISHED_JOB))
        )  # fmt: skip
        with self.engine.connect() as db:
            return [
                EndedFile(WatchedFile.from_row(row), row["job_status"],
                          (row["job_result"] or {}).get("rows"), row["job_error"])
                for row in db.execute(query).mappings()
            ]  # fmt: skip

    def done(self, file: WatchedFile, rows: int | None) -> bool:
        return self._settle(file, "done", None, rows=rows)

    def retry(self, file: WatchedFile, error: str, not_before: float) -> bool:
        """Pending again, for another attempt after `not_before`."""
        return self._settle(file, "pending", error, not_before=not_before)

    def fail(self, file: WatchedFile, error: str) -> bool:
        return self._settle(file, "failed", error)

    def _settle(
        self, file: WatchedFile, state: FileState, error: str | None, rows: int | None = None,
        not_before: float | None = None,
    ) -> bool:  # fmt: skip
        """Move a running file on, once: only its claimer while its job is being made, then only
        the end of that job."""
        if file.submit_until is not None:
            held = self._claimed(file)
        else:
            held = watch_files.update().where(
                watch_files.c.id == file.id, watch_files.c.job_id == file.job_id,
                watch_files.c.state == "running", watch_files.c.submit_until.is_(None),
            )  # fmt: skip
        moved = held.values(
            state=state, submit_until=None, updated=time.time(), error=error,
            rows=watch_files.c.rows if rows is None else rows,
            not_before=watch_files.c.not_before if not_before is None else not_before,
        )  # fmt: skip
        with self._write.begin() as db:
            return bool(db.execute(moved).rowcount)

    def files(self, watch: str, state: FileState | None, limit: int) -> list[WatchedFile]:
        query = sa.select(watch_files).where(watch_files.c.watch == watch)
        if state is not None:
            query = query.where(watch_files.c.state == state)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(watch_files.c.id.desc()).limit(limit)).mappings()
            return [WatchedFile.from_row(row) for row in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Each watch's files in each state."""
        query = sa.select(watch_files.c.watch, watch_files.c.state, sa.func.count()).group_by(
            watch_files.c.watch, watch_files.c.state
        )
        counted: dict[str, dict[str, int]] = {}
        with self.engine.connect() as db:
            for watch, state, count in db.execute(query):
                counted.setdefault(watch, dict.fromkeys(FILE_STATES, 0))[state] = count
        return counted
