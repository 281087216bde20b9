"""Predictions held at the gateway while the fleet has no node to serve them (an autoscaled fleet at
zero, or every node starting), sent once one is ready with the models loaded.

The balancer answers at once when it has no node (nginx's upstream is empty or every node is out);
a held call tries again every `retry_s` until its deadline, which starts when the request arrived
(the admission sets it). Past it, or when the expected cold start would not fit in what is left, the
call answers 503 with a Retry-After of the expected cold start, not a 504. A job partition's call
waits within its own timeout. Without autoscaling nothing is held: the call fails as before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from inferrer.dataplane.admission import request_deadline
from inferrer.dataplane.balancer_client import Upstream, UpstreamAnswer
from inferrer.errors import InferrerError, UpstreamUnavailable

ANSWER_MARGIN_S = 0.25  # what is kept back from the deadline to send the 503


class NoNodeReady(InferrerError):
    """No node could serve within the request's deadline; `retry_after_s`: the expected cold start."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:  # type: ignore[override]  # a class constant elsewhere
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class HoldingUpstream:
    """An Upstream that holds calls while no node can take them."""

    def __init__(
        self, inner: Upstream, expected_cold_start_s: Callable[[], float | None], retry_s: float = 0.2
    ) -> None:
        self._inner = inner
        self._cold_start = expected_cold_start_s
        self._retry_s = retry_s
        self.held = 0  # online predictions waiting for a node now (job partitions are counted apart)

    async def close(self) -> None:
        await self._inner.close()

    async def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        now = asyncio.get_running_loop().time()
        deadline = request_deadline.get() if timeout_s is None else now + timeout_s
        try:
            return await self._inner.request(method, path, body, timeout_s)
        except UpstreamUnavailable:
            if deadline is None:
                raise
            return await self._hold(method, path, body, timeout_s, deadline)

    async def _hold(
        self, method: str, path: str, body: bytes | None, timeout_s: float | None, deadline: float
    ) -> UpstreamAnswer:
        loop = asyncio.get_running_loop()
        online = timeout_s is None
        self.held += online
        waited_from = time.monotonic()
        try:
            while True:
                left = deadline - loop.time() - ANSWER_MARGIN_S
                cold = self._cold_start() or 0.0
                if left <= 0 or cold > left + (time.monotonic() - waited_from):
                    raise NoNodeReady(
                        f"no node was ready within the request's deadline (a node takes about "
                        f"{cold:.1f} s to start); retry later",
                        cold,
                    )
                await asyncio.sleep(min(self._retry_s, left))
                try:
                    return await self._inner.request(method, path, body, timeout_s)
                except UpstreamUnavailable:
                    continue
        finally:
            self.held -= online
