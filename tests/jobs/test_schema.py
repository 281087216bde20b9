"""Gateway processes that start together on a new job store (SQLite or PostgreSQL) each open it: one
creates the tables, the others wait for it and find them (two uvicorn workers of one gateway start
so; a worker that failed here used to stop its whole gateway, and on PostgreSQL, seen in a fleet
test, a second CREATE TABLE of a name failed)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import sqlalchemy as sa

from inferrer.jobs.schema import metadata, open_engine

PROCESSES = 6
ROUNDS = 5


def _open(url: str, start: Barrier, answers: Queue) -> None:  # type: ignore[type-arg]
    start.wait()
    try:
        open_engine(url).dispose()
        answers.put("opened")
    except Exception as exc:  # reported to the test, which names it
        answers.put(f"{type(exc).__name__}: {str(exc)[:120]}")


def test_processes_opening_a_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    _open_together(lambda round_: f"sqlite:///{tmp_path}/jobs-{round_}.db")


@pytest.mark.fleet
def test_processes_opening_a_new_postgresql_store_at_once_all_open_it(postgres: str) -> None:
    def emptied(round_: int) -> str:
        engine = sa.create_engine(postgres)
        metadata.drop_all(engine)
        engine.dispose()
        return postgres

    _open_together(emptied)


def _open_together(new_store: Callable[[int], str]) -> None:
    """In each of ROUNDS rounds, PROCESSES processes open a new store at once."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(ROUNDS):
        url = new_store(round_)
        start, answers = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_open, args=(url, start, answers)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes += [answers.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
    failed = [o for o in outcomes if o != "opened"]
    assert failed == [], failed[:3]
