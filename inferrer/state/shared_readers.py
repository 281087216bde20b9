"""The gateway processes that read a shared repository, and the generation each holds: one heartbeat
row per process (`repository_readers`). A writer waits until every live one holds its write; one
silent for a lease is no longer waited for (it answers 503 by then: shared_backend.py)."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inferrer.state.shared_schema import repository_readers
from inferrer.state.sql_engine import WRITE

logger = logging.getLogger(__name__)

_GONE_AFTER_LEASES = 10  # a reader's row is removed once its heartbeat is this many leases old


class Readers:
    def __init__(self, engine: Engine, poll_s: float, lease_s: float) -> None:
        self._engine = engine
        self._writes = engine.execution_options(**{WRITE: True})
        self._poll_s, self._lease_s = poll_s, lease_s
        self._me = uuid.uuid4().hex  # this process

    def beat(self, seen: int, at: float) -> None:
        """This process holds generation `seen`, read at `at` (epoch seconds)."""
        with self._writes.begin() as connection:
            beat = {"seen": seen, "heartbeat": at}
            mine = repository_readers.c.reader == self._me
            if not connection.execute(sa.update(repository_readers).where(mine).values(**beat)).rowcount:
                connection.execute(repository_readers.insert().values(reader=self._me, **beat))

    def forget_gone(self, connection: Connection) -> None:
        """Inside a write: readers gone long ago (killed) leave, so no writer waits for them."""
        gone = repository_readers.c.heartbeat < time.time() - _GONE_AFTER_LEASES * self._lease_s
        connection.execute(sa.delete(repository_readers).where(gone))

    def wait_until_all_hold(self, target: object) -> None:
        """Until every other live reader holds generation `target`, at most a lease and a poll."""
        deadline = time.monotonic() + self._lease_s + self._poll_s
        behind = sa.select(sa.func.count()).where(
            repository_readers.c.reader != self._me,
            repository_readers.c.seen < target,
            repository_readers.c.heartbeat > sa.bindparam("alive_since"),
        )
        while True:
            with self._engine.connect() as connection:
                waiting = connection.execute(
                    behind, {"alive_since": time.time() - self._lease_s}
                ).scalar_one()
            if not waiting:
                return
            if time.monotonic() > deadline:
                logger.warning("%d gateway processes did not read generation %s in time", waiting, target)
                return
            time.sleep(self._poll_s / 4)

    def leave(self) -> None:
        """This process reads no more: no writer waits for it."""
        with contextlib.suppress(sa.exc.SQLAlchemyError), self._writes.begin() as connection:
            connection.execute(sa.delete(repository_readers).where(repository_readers.c.reader == self._me))
