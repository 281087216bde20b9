"""The job store's schema, and the engine that holds it: SQLite (WAL, write transactions taking
the write lock at their start) or PostgreSQL, by URL."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # JobStatus values
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # its plan (records.InlinePlan or FilePlan)
    # A file job's output location, one job's only: two jobs never write into one place.
    sa.Column("output_location", sa.String(1100), unique=True),
    sa.Column("partitions_total", sa.Integer, nullable=False),
    sa.Column("result", sa.JSON),  # inline predictions, or the output manifest
    sa.Column("error", sa.Text),
    sa.Column("created", sa.Float, nullable=False, index=True),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("deadline", sa.Float, nullable=False),
)

partitions = sa.Table(
    "partitions",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),  # its span (records.Span): byte range or row group
    sa.Column("status", sa.String(16), nullable=False),  # pending | running | done | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("not_before", sa.Float, nullable=False, default=0.0),  # retry backoff
    sa.Column("lease_until", sa.Float),  # while running: when the claim lapses
    sa.Column("rows_done", sa.Integer),
    sa.Column("rows_failed", sa.Integer),
    sa.Column("output", sa.JSON),  # the part written (records.PartOutput)
    sa.Column("node", sa.String(64)),
    sa.Column("error", sa.Text),
)

row_errors = sa.Table(
    "row_errors",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),  # 1-based, in the input file
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("job_id", "partition", "line"),
)

# Watches (inferrer.watches): folders or prefixes whose new files become jobs, and every file
# version each has seen, with its state, so that a restarted gateway neither loses nor redoes one.
watches = sa.Table(
    "watches",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),  # as created (WatchSpec)
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("error", sa.Text),  # why its input cannot be listed; None once it can
)

watch_files = sa.Table(
    "watch_files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("watch", sa.String(64), sa.ForeignKey("watches.name", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(1024), nullable=False),  # in the watched folder
    sa.Column("identity", sa.String(200), nullable=False),  # size and mtime or ETag: one version
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # pending|running|done|failed
    sa.Column("version", sa.String(64)),  # the model's, fixed when the file is picked up
    sa.Column("output", sa.String(1100), unique=True),  # reserved when picked up, for good
    sa.Column("job_id", sa.String(64)),  # the latest attempt's
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("not_before", sa.Float, nullable=False),  # retry backoff
    sa.Column("submit_until", sa.Float),  # while its job is being created: when that claim lapses
    sa.Column("claim", sa.String(32)),  # who is creating its job: a claim taken over gets a new one
    sa.Column("rows", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("seen", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.UniqueConstraint("watch", "name", "identity"),
    sa.Index("watch_files_by_watch", "watch", "id"),
)

WRITE = "modelfleet_write"  # an execution option: this transaction writes
# Transactions that count rows and then claim up to a fleet-wide limit: one at a time of each kind.
CLAIM_PARTITIONS, CLAIM_FILES = 1, 2


def one_at_a_time(connection: Connection, kind: int) -> None:
    """Hold `kind`'s lock until the transaction ends: PostgreSQL runs the others of that kind after
    it, so what they count is what this one left (SQLite's write transactions run one at a time)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(kind)))


_SCHEMA_LOCK = 0x6D66_6A6F_6273  # "mfjobs": the advisory lock held while the tables are created


def open_engine(url: str) -> Engine:
    """An engine with the schema in place; SQLite in WAL mode, waiting on a busy database."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            connection.isolation_level = None  # transactions begin below, not in the driver
            cursor = connection.cursor()
            cursor.execute("PRAGMA busy_timeout=10000")  # first: the next line may wait too
            _while_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
            # Durable across a killed process (what the job store must survive); an OS crash may
            # lose the last commits. FULL would sync every commit: a job's few rows cost ms each.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # A write takes the write lock at its start: one that reads, then writes, never meets
            # another that did the same (SQLite cannot upgrade both), and runs whole. Reads take
            # none: in WAL mode they see the last commit and never wait for a writer.
            write = connection.get_execution_options().get(WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    if engine.dialect.name == "postgresql":
        # Gateway processes that start together on a new database create its tables one after
        # another: each would see them missing, and the second CREATE TABLE of a name fails.
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(connection)
        return engine
    # A write transaction: gateway processes that start together on a new store create its tables
    # one after another (each reads what exists, then creates; SQLite cannot upgrade two readers).
    _while_locked(lambda: metadata.create_all(engine.execution_options(**{WRITE: True})))
    return engine


def _while_locked(step: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Run `step` again while SQLite answers "database is locked" without waiting: the switch to
    WAL and a first open beside one under way can answer so at once, busy_timeout or not (seen
    with several processes opening a new store together)."""
    deadline = time.monotonic() + timeout_s
    for attempt in itertools.count(1):
        try:
            step()
            return
        except (sqlite3.OperationalError, sa.exc.OperationalError) as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(min(0.01 * attempt, 0.2))
