"""Admission control for predictions: a bound on the predictions in flight, and a deadline.

Beyond `max_in_flight` a prediction is refused at once (503 with Retry-After) instead of queueing, so
latency stays bounded under overload and a client or balancer can go elsewhere. Every prediction has
a deadline: the client's `X-Request-Timeout` (seconds), at most `max_timeout_s`, which is also the
deadline of a request that names none. Past it the prediction is abandoned and answers 504.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import ClassVar

from starlette.datastructures import Headers

from inferrer.errors import InferrerError, MalformedRequest
from metrics.definitions import InferrerMetrics
from wire import tracing

TIMEOUT_HEADER = "x-request-timeout"
PEAK_WINDOW_S = 1.0
# The event-loop time by which the current request must answer: its deadline, from its arrival.
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


class Overloaded(InferrerError):
    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class DeadlineExceeded(InferrerError):
    status_code = 504


class Admission:
    def __init__(self, max_in_flight: int, max_timeout_s: float, metrics: InferrerMetrics) -> None:
        self._max_in_flight = max_in_flight
        self._max_timeout_s = max_timeout_s
        self._in_flight = 0
        self._peak = self._previous_peak = 0  # most in flight at once in this window and the last
        self._window_start = -math.inf
        metrics.predictions_in_flight.set_function(lambda: self._in_flight)  # read at each scrape

    def recent_peak(self) -> int:
        """The most predictions in flight at once lately: in the current PEAK_WINDOW_S window or
        the one before (0 once two windows passed without any)."""
        self._roll(time.monotonic())
        return max(self._peak, self._previous_peak, self._in_flight)

    def _roll(self, now: float) -> None:
        if now - self._window_start >= PEAK_WINDOW_S:
            recent = now - self._window_start < 2 * PEAK_WINDOW_S
            self._previous_peak = self._peak if recent else 0
            self._peak = self._in_flight
            self._window_start = now

    def _deadline_s(self, headers: Headers) -> float:
        raw = headers.get(TIMEOUT_HEADER)
        if raw is None:
            return self._max_timeout_s
        try:
            asked = float(raw)
        except ValueError:
            asked = math.nan
        if not 0 < asked < math.inf:
            raise MalformedRequest(f"X-Request-Timeout must be a positive number of seconds, got {raw!r}")
        return min(asked, self._max_timeout_s)

    @asynccontextmanager
    async def admit(self, headers: Headers) -> AsyncIterator[None]:
        with tracing.span("admission", {"modelfleet.in_flight": self._in_flight}):
            deadline_s = self._deadline_s(headers)
            if self._in_flight >= self._max_in_flight:
                raise Overloaded(
                    f"overloaded: {self._in_flight} predictions in flight (limit {self._max_in_flight}); "
                    "retry after 1 s"
                )
        self._in_flight += 1
        self._roll(time.monotonic())
        self._peak = max(self._peak, self._in_flight)
        deadline = asyncio.timeout(deadline_s)
        request_deadline.set(asyncio.get_running_loop().time() + deadline_s)
        try:
            async with deadline:
                yield
        except TimeoutError:
            if not deadline.expired():
                raise
            raise DeadlineExceeded(f"no answer within the request's deadline of {deadline_s:g} s") from None
        finally:
            self._in_flight -= 1
