"""The job store's schema, and the engine that holds it (inferrer/state/sql_engine.py)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inferrer.state.sql_engine import WRITE, open_sql_engine

__all__ = ["WRITE", "open_engine"]

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

# Transactions that count rows and then claim up to a fleet-wide limit: one at a time of each kind.
CLAIM_PARTITIONS, CLAIM_FILES = 1, 2


def one_at_a_time(connection: Connection, kind: int) -> None:
    """Hold `kind`'s lock until the transaction ends: PostgreSQL runs the others of that kind after
    it, so what they count is what this one left (SQLite's write transactions run one at a time)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(kind)))


_SCHEMA_LOCK = 0x6D66_6A6F_6273  # "mfjobs": the advisory lock held while the tables are created


def open_engine(url: str) -> Engine:
    """The job store's engine, its tables in place."""
    return open_sql_engine(url, metadata, _SCHEMA_LOCK)
