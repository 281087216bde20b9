"""The node's predict thread, online first: calls wait in priority order (online predictions before a
batch job's chunks, first come first served within each), so a chunk queued behind others never
holds an online prediction back by more than the chunk running when it came."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from enum import IntEnum
from typing import Any, TypeVar

T = TypeVar("T")


class Priority(IntEnum):
    ONLINE = 0
    BATCH = 1


_STOP = -1


class PredictThread:
    def __init__(self, name: str = "predict") -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, priority: Priority, call: Callable[..., T], *args: Any) -> T:
        future: Future[T] = Future()
        self._queue.put((int(priority), next(self._order), (future, call, args)))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Cancel what waits, let the running call end, stop the thread."""
        self._queue.put((_STOP, next(self._order), None))
        self._thread.join()
        while not self._queue.empty():
            _, _, item = self._queue.get_nowait()
            if item is not None:
                item[0].cancel()

    def _serve(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is None:
                return
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)
