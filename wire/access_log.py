"""The access log: one line per answered request, written in batches.

Through `logging`, a line costs a LogRecord, a formatter with its own clock reading, and a write to
a pipe that wakes its reader (the launcher, or the container engine): on a one-row predict, a sixth
of the gateway's CPU. Here a request leaves a tuple; at most `interval_s` later (or once `capacity`
wait) the lines are formatted, with the clock formatted once per second, and written in one write.
The lines keep the shape of every other log line (`deploy/logging.json`'s format):

    2026-12-03 03:30:01,123 INFO modelfleet.access: "POST /api/v1/models/m/predict" 200 1.23ms request_id=...

The logger's level still decides: set `modelfleet.access` to WARNING and nothing is kept.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time

access_log = logging.getLogger("modelfleet.access")
Entry = tuple[float, str, str, int, float, str]  # when, method, path, status, seconds, request id


class AccessLog:
    def __init__(self, interval_s: float = 0.25, capacity: int = 512) -> None:
        self.interval_s = interval_s
        self.capacity = capacity
        self._pending: list[Entry] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on
        self._second = -1
        self._stamp = ""
        atexit.register(self.flush)

    def add(self, method: str, path: str, status: int, elapsed_s: float, request_id: str) -> None:
        """Keep one request's line (called on the event loop)."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        self._pending.append((time.time(), method, path, status, elapsed_s, request_id))
        if len(self._pending) >= self.capacity:
            self.flush()
        elif (loop := asyncio.get_running_loop()) is not self._flush_on:  # none due on this loop
            loop.call_later(self.interval_s, self.flush)
            self._flush_on = loop

    def flush(self) -> None:
        self._flush_on = None
        entries, self._pending = self._pending, []
        if not entries:
            return
        lines = [self._line(*entry) for entry in entries]
        try:
            sys.stderr.write("".join(lines))
            sys.stderr.flush()
        except (OSError, ValueError):  # the stream is gone (closed at exit): nothing to keep them in
            pass

    def _line(
        self, when: float, method: str, path: str, status: int, elapsed_s: float, request_id: str
    ) -> str:
        second = int(when)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return (
            f"{self._stamp},{int(when * 1000) % 1000:03d} INFO {access_log.name}: "
            f'"{method} {path}" {status} {elapsed_s * 1000:.2f}ms request_id={request_id}\n'
        )
