"""The one load generator of the fleet tests: `concurrency` requests in flight on loopback, bounded in
count and time, every answer recorded (when sent, how long, status, node, version, predictions).

One asyncio loop in a background thread runs `concurrency` workers on one pooled httpx client (one
connection per worker), so a drain, a restart or a stall always meets many requests in flight. The
test's own thread acts meanwhile (kills a node, deploys a version) and reads the counts as they grow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    sent_at: float  # time.monotonic() when the request was sent
    seconds: float  # until its answer (or its transport error)
    status: int  # 0: no HTTP answer (the error is in `body`)
    node: str | None  # X-Modelhost-Node
    version: str | None
    predictions: list[Any] | None
    body: str  # the first 300 characters, for failure messages
    retry_after: str | None = None

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] if ordered else 0.0


class LoadLoop:
    """POSTs `body` to `url` from `concurrency` workers until `max_requests` were sent, `max_seconds`
    passed, or the loop is stopped (leaving the `with` block stops it and waits for its last answers).
    """

    def __init__(
        self,
        url: str,
        body: Any,
        max_requests: int,
        max_seconds: float,
        concurrency: int = 16,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        assert url.startswith("http://127.0.0.1:"), "load goes to loopback only"
        self.url = url
        self.body = body
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.concurrency = concurrency
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.sent = 0
        self.answers: list[Answer] = []
        self.failures: list[str] = []  # every answer that is not a 200, as "status: body"
        self.nodes: Counter[str] = Counter()  # 200 answers per node
        self.versions: list[tuple[float, str]] = []  # (when the request was sent, version that answered)
        self.error: BaseException | None = None  # what ended the loop early, if anything did
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 10)
        assert not self._thread.is_alive(), "the load loop did not stop"
        assert self.error is None, f"the load loop failed: {self.error!r}"

    def wait(self, timeout_s: float) -> bool:
        """Until the loop ended by itself (every request sent and answered, or its time up)."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def mark(self) -> Counter[str]:
        """A copy of the per-node counts so far (to see who served after a point)."""
        with self._lock:
            return Counter(self.nodes)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def report(self) -> str:
        answers = self.snapshot()
        waits = [a.seconds for a in answers]
        return (
            f"sent={self.sent} c={self.concurrency} failed={len(self.failures)} per node={dict(self.mark())} "
            f"p99={percentile(waits, 0.99) * 1000:.0f}ms longest={max(waits, default=0.0):.2f}s"
        )

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
            raise

    async def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits, headers=self.headers) as client:
            await asyncio.gather(*(self._worker(client, deadline) for _ in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, deadline: float) -> None:
        while not self._stop.is_set() and self.sent < self.max_requests and time.monotonic() < deadline:
            self.sent += 1
            self._record(await self._post(client))

    async def _post(self, client: httpx.AsyncClient) -> Answer:
        sent_at = time.monotonic()
        try:
            response = await client.post(self.url, json=self.body)
        except httpx.HTTPError as exc:
            return Answer(sent_at, time.monotonic() - sent_at, 0, None, None, None, repr(exc))
        seconds = time.monotonic() - sent_at
        headers = response.headers
        node, version, predictions = headers.get("x-modelhost-node"), None, None
        if response.status_code == 200:
            try:
                answer = response.json()
                # An inference graph's answer names no node (its steps ran on several).
                node = "graph" if isinstance(answer, dict) and "graph" in answer else answer["node"]
                version, predictions = answer["version"], answer["predictions"]
            except (ValueError, KeyError, TypeError):
                pass  # not a predict answer: recorded as a failure (no version)
        return Answer(
            sent_at, seconds, response.status_code, node, version, predictions,
            response.text[:300], headers.get("retry-after"),
        )  # fmt: skip

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            if answer.status == 200 and answer.node is not None and answer.version is not None:
                self.nodes[answer.node] += 1
                self.versions.append((answer.sent_at, answer.version))
            else:
                self.failures.append(f"{answer.status}: {answer.body}")
