"""The node's predict thread serves online predictions before a batch job's chunks."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

import pytest

from modelhost.priority import ONLINE_STREAK, PredictThread, Priority, in_batch_thread


def holding() -> tuple[Callable[[], None], threading.Event, threading.Event]:
    """A call that holds the thread until released, and the events to tell and release it."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        assert release.wait(10)

    return hold, started, release


def order_run(calls: list[tuple[Priority, str]]) -> list[str]:
    """The order in which `calls`, queued while a chunk holds the thread, run once it is free."""
    ran: list[str] = []
    hold, started, release = holding()

    async def scenario() -> None:
        thread = PredictThread()
        try:
            running = asyncio.ensure_future(thread.run(Priority.BATCH, hold))
            assert await asyncio.to_thread(started.wait, 10)
            queued = [
                asyncio.ensure_future(thread.run(priority, ran.append, name)) for priority, name in calls
            ]
            await asyncio.sleep(0)  # each call is queued when its future starts
            release.set()
            await asyncio.gather(running, *queued)
        finally:
            thread.close()

    asyncio.run(scenario())
    return ran


def test_online_calls_queued_behind_batch_chunks_run_first() -> None:
    calls = [
        (Priority.BATCH, "chunk 1"),
        (Priority.ONLINE, "online 1"),
        (Priority.BATCH, "chunk 2"),
        (Priority.ONLINE, "online 2"),
    ]
    assert order_run(calls) == ["online 1", "online 2", "chunk 1", "chunk 2"]


def test_a_chunk_runs_after_at_most_a_streak_of_online_calls() -> None:
    calls = [(Priority.BATCH, "chunk"), *[(Priority.ONLINE, f"online {i}") for i in range(ONLINE_STREAK + 4)]]
    ran = order_run(calls)
    assert ran.index("chunk") == ONLINE_STREAK
    assert len(ran) == ONLINE_STREAK + 5


def test_a_failing_call_raises_in_its_caller_and_the_thread_goes_on() -> None:
    async def scenario() -> int:
        thread = PredictThread()
        try:
            with pytest.raises(ZeroDivisionError):
                await thread.run(Priority.ONLINE, lambda: 1 / 0)
            return await thread.run(Priority.BATCH, lambda: 7)
        finally:
            thread.close()

    assert asyncio.run(scenario()) == 7


def test_closing_lets_the_running_call_end_and_cancels_what_waits() -> None:
    hold, started, release = holding()

    async def scenario() -> tuple[bool, bool]:
        thread = PredictThread()
        running = asyncio.ensure_future(thread.run(Priority.BATCH, hold))
        assert await asyncio.to_thread(started.wait, 10)
        waiting = asyncio.ensure_future(thread.run(Priority.ONLINE, lambda: None))
        await asyncio.sleep(0)
        release.set()
        thread.close()
        await asyncio.wait([running, waiting], timeout=10)
        return running.done() and not running.cancelled(), waiting.cancelled()

    assert asyncio.run(scenario()) == (True, True)


def test_a_closed_thread_refuses_calls() -> None:
    async def scenario() -> None:
        thread = PredictThread()
        thread.close()
        with pytest.raises(RuntimeError, match="closed"):
            await thread.run(Priority.ONLINE, lambda: None)

    asyncio.run(scenario())


def test_batch_work_runs_at_the_lowest_cpu_priority() -> None:
    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert asyncio.run(in_batch_thread(own_nice)) == 19
    assert own_nice() != 19  # the caller's thread keeps its own
