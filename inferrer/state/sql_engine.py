"""The engine of an SQL store (the job store, the shared repository index): SQLite in WAL mode with
write transactions that take the write lock at their start, or PostgreSQL, by URL; the store's
tables created once, however many gateway processes open it together."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

WRITE = "modelfleet_write"  # an execution option: this transaction writes

# A gateway cut off from PostgreSQL in the middle of a transaction must not hold its locks (the
# repository's write lock, a job's rows) until TCP gives up, hours later: the server ends a session
# idle inside a transaction after 15 s, and keepalives find a silent peer in about 10 s.
_POSTGRESQL_SESSION = {
    "connect_timeout": 5,
    "options": "-c idle_in_transaction_session_timeout=15000",
    "keepalives": 1,
    "keepalives_idle": 4,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


def open_sql_engine(url: str, metadata: sa.MetaData, schema_lock: int) -> Engine:
    """An engine with `metadata`'s tables in place; SQLite in WAL mode, waiting on a busy database.
    `schema_lock`: the PostgreSQL advisory lock held while the tables are created."""
    postgresql = sa.engine.make_url(url).get_backend_name() == "postgresql"
    engine = sa.create_engine(url, connect_args=_POSTGRESQL_SESSION if postgresql else {}, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            connection.isolation_level = None  # transactions begin below, not in the driver
            cursor = connection.cursor()
            cursor.execute("PRAGMA busy_timeout=10000")  # first: the next line may wait too
            _while_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
            # Durable across a killed process (what the stores must survive); an OS crash may
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
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema_lock})
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
