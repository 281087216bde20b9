"""Online first on a node.

- The predict thread: online predictions waiting run before a batch job's chunks (first come,
  first served within each), so a chunk queued behind others never holds an online prediction back
  by more than the chunk running when it came. A chunk still gets its turn after ONLINE_STREAK
  online calls in a row, however busy online traffic stays.
- The batch threads: a partition's reading, parsing, rendering and writing run in threads at the
  lowest CPU priority (nice 19), so the kernel gives the cores to online work first, on this node
  and on every process beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from enum import IntEnum
from typing import Any, TypeVar

T = TypeVar("T")
ONLINE_STREAK = 16
Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Priority(IntEnum):
    ONLINE = 0
    BATCH = 1


class PredictThread:
    def __init__(self, name: str = "predict") -> None:
        self._waiting: dict[Priority, deque[Call]] = {Priority.ONLINE: deque(), Priority.BATCH: deque()}
        self._ready = threading.Condition()
        self._closed = False
        self._streak = 0  # online calls run in a row while a chunk waited
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, priority: Priority, call: Callable[..., T], *args: Any) -> T:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the predict thread is closed")
            self._waiting[priority].append((future, call, args))
            self._ready.notify()
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Cancel what waits, let the running call end, stop the thread."""
        with self._ready:
            self._closed = True
            for waiting in self._waiting.values():
                while waiting:
                    waiting.popleft()[0].cancel()
            self._ready.notify()
        self._thread.join()

    def _next(self) -> Call | None:
        with self._ready:
            while not self._closed and not any(self._waiting.values()):
                self._ready.wait()
            if self._closed:
                return None
            online, batch = self._waiting[Priority.ONLINE], self._waiting[Priority.BATCH]
            if online and not (batch and self._streak >= ONLINE_STREAK):
                self._streak = self._streak + 1 if batch else 0
                return online.popleft()
            self._streak = 0
            return batch.popleft()

    def _serve(self) -> None:
        while (item := self._next()) is not None:
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)


def _lowest_cpu_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # where threads have no nice value of their own
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


_BATCH_THREADS = ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="batch", initializer=_lowest_cpu_priority
)


async def in_batch_thread(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a batch thread (nice 19)."""
    return await asyncio.get_running_loop().run_in_executor(_BATCH_THREADS, call, *args)
