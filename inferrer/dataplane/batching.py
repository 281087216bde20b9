"""Adaptive batching at the gateway: concurrent requests for the same model, version and outputs
become one upstream call, predicted in one call on a node, and are split back in order.

A lane (one per model, version, artifact, outputs and kind of rows: float matrix or table) sends at
once while fewer than `max_in_flight` of its calls are upstream, so a lone request never waits. Under
load, requests queue while the lane's calls are busy and leave together when one returns, or when the
batch reaches `max_rows`, or when the oldest has waited `max_wait_s`.

The lane adapts to the model's measured predict time on the nodes (each answer carries it): when a
batch of several requests has just come back, its clients send their next requests together, and the
first of them would otherwise find room upstream and go alone. For a model whose predict call costs
at least `gather_above_s` (a 100-tree forest: ~3 ms a call, nearly flat in rows, so a third of its
calls carried one row and cost a node as much as 30), new requests then queue for the gathering
window: twice that batch's call time, at least `max_wait_s` and at most four times it (a call slowed
by a stalled node does not hold the lane for long); each batch still leaves at `max_rows` or after
`max_wait_s`. A cheap model (a logistic regression: ~0.1 ms) does not gather: the wait would cost it
more than the call (20% fewer req/s, measured). A lone client (one request at a time) never forms a
batch, so it never waits. Requests are validated before they
join a batch, and when a node refuses a batch's values (422: a model may reject what no schema check
can see, such as text in a column it learnt as numbers, or NaN without an imputer), each of its
requests is sent again alone: one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferrer.dataplane.admission import request_deadline
from inferrer.errors import UpstreamAnswered
from metrics.definitions import InferrerMetrics
from wire import tracing
from wire.access import current_request_id

Outputs = dict[str, list[Any]]
Send = Callable[[np.ndarray], Awaitable[tuple[str, str, Outputs]]]  # rows -> (version, node, outputs)
PREDICT_ALPHA = 0.1
# model, version, artifact sha256, outputs, rows are a table: requests in one lane are sent alike.
LaneKey = tuple[str, str, str, tuple[str, ...], bool]


@dataclass
class _Waiting:
    rows: np.ndarray
    future: asyncio.Future[tuple[str, str, Outputs]]
    since: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=current_request_id.get)
    deadline: float | None = field(default_factory=request_deadline.get)
    trace: tracing.Context | None = field(default_factory=tracing.current)  # None: tracing off
    since_ns: int = field(default_factory=time.time_ns)  # for its trace's wait span


@dataclass
class _Lane:
    send: Send
    waiting: list[_Waiting] = field(default_factory=list)
    rows: int = 0
    in_flight: int = 0
    timer: asyncio.TimerHandle | None = None
    gather_until: float = 0.0  # perf_counter time: until then, a new request queues (load is here)
    predict_s: float = 0.0  # a node's predict call of this model, as the last answer said


class Batcher:
    def __init__(
        self,
        max_rows: int,
        max_wait_s: float,
        max_in_flight: int,
        metrics: InferrerMetrics,
        gather_above_s: float = 0.001,
    ) -> None:
        self._gather_above_s = gather_above_s
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._max_in_flight = max_in_flight
        self._metrics = metrics
        self._lanes: dict[LaneKey, _Lane] = {}
        self.predict_s: float | None = None  # moving average of a node's predict call, any model

    async def submit(self, key: LaneKey, rows: np.ndarray, send: Send) -> tuple[str, str, Outputs]:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(send)
        gathering = time.perf_counter() < lane.gather_until
        if not lane.waiting and lane.in_flight < self._max_in_flight and not gathering:
            return await self._send_alone(key, lane, rows)
        waiting = _Waiting(rows, asyncio.get_running_loop().create_future())
        lane.waiting.append(waiting)
        lane.rows += len(rows)
        self._metrics.batch_queue(key[0]).set(len(lane.waiting))
        if lane.rows >= self._max_rows:
            self._dispatch(key, lane)
        elif lane.timer is None:
            lane.timer = asyncio.get_running_loop().call_later(self._max_wait_s, self._dispatch, key, lane)
        return await waiting.future

    def queued_rows(self) -> int:
        """Rows waiting in every lane for their batch to be sent."""
        return sum(lane.rows for lane in self._lanes.values())

    def observe_predict(self, key: LaneKey, predict_s: float) -> None:
        """What a node said one predict call of the lane's model costs (and every model's, on
        average: each answer moves `predict_s` PREDICT_ALPHA of the way)."""
        last = self.predict_s
        self.predict_s = predict_s if last is None else PREDICT_ALPHA * predict_s + (1 - PREDICT_ALPHA) * last
        if (lane := self._lanes.get(key)) is not None:
            lane.predict_s = predict_s

    async def _send_alone(self, key: LaneKey, lane: _Lane, rows: np.ndarray) -> tuple[str, str, Outputs]:
        """Nothing queued and room upstream: send from the caller's own task, without a hand-off."""
        self._metrics.batch_rows(key[0]).observe(len(rows))
        self._metrics.batch_wait(key[0]).observe(0.0)
        lane.in_flight += 1
        try:
            with tracing.span("batch", {"modelfleet.batch.requests": 1, "modelfleet.batch.rows": len(rows)}):
                return await lane.send(rows)
        finally:
            self._finished(key, lane)

    def _finished(self, key: LaneKey, lane: _Lane) -> None:
        lane.in_flight -= 1
        if not lane.waiting:
            if lane.in_flight == 0:
                self._forget_when_idle(key, lane)
        elif time.perf_counter() >= lane.gather_until:
            self._dispatch(key, lane)
        # else gathering: the batch leaves with its timer (max_wait_s) or at max_rows

    def _forget_when_idle(self, key: LaneKey, lane: _Lane) -> None:
        """Drop an idle lane, once its gathering window (if any) has passed."""
        if lane.waiting or lane.in_flight or self._lanes.get(key) is not lane:
            return
        left = lane.gather_until - time.perf_counter()
        if left > 0:
            asyncio.get_running_loop().call_later(left, self._forget_when_idle, key, lane)
        else:
            self._lanes.pop(key, None)

    def _dispatch(self, key: LaneKey, lane: _Lane) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        if not lane.waiting:
            return
        batch: list[_Waiting] = []
        rows = 0
        while lane.waiting and (not batch or rows + len(lane.waiting[0].rows) <= self._max_rows):
            item = lane.waiting.pop(0)
            lane.rows -= len(item.rows)
            if item.future.done():  # its client went away (deadline passed): send nothing for it
                continue
            batch.append(item)
            rows += len(item.rows)
        self._metrics.batch_queue(key[0]).set(len(lane.waiting))
        if lane.waiting:  # what did not fit under max_rows leaves with the next batch, or on time
            lane.timer = asyncio.get_running_loop().call_later(self._max_wait_s, self._dispatch, key, lane)
        if not batch:
            if lane.in_flight == 0:
                self._forget_when_idle(key, lane)
            return
        lane.in_flight += 1
        # A context of its own: the batch's task must not carry the trace (or request id) of
        # whichever request happened to dispatch it; _send sets what the batch carries.
        asyncio.get_running_loop().create_task(self._send(key, lane, batch), context=contextvars.Context())

    async def _send(self, key: LaneKey, lane: _Lane, batch: list[_Waiting]) -> None:
        now = time.perf_counter()
        model = key[0]
        self._metrics.batch_rows(model).observe(sum(len(item.rows) for item in batch))
        for item in batch:
            self._metrics.batch_wait(model).observe(now - item.since)
        # The upstream call carries the ids of all its requests, so each appears in the node's log.
        current_request_id.set(",".join(item.request_id for item in batch if item.request_id))
        # ...and waits (for a first node) as long as the latest deadline among them allows.
        deadlines = [item.deadline for item in batch]
        request_deadline.set(None if None in deadlines else max(d for d in deadlines if d is not None))
        try:
            with _batch_span(batch):
                version, node, outputs = await lane.send(np.concatenate([item.rows for item in batch]))
        except UpstreamAnswered as exc:
            if exc.status_code == 422 and len(batch) > 1:  # whose values? each request finds out alone
                await asyncio.gather(*(self._send_again_alone(lane, item) for item in batch))
            else:
                _fail(batch, exc)
        except Exception as exc:  # every request of the batch gets the upstream failure
            _fail(batch, exc)
        else:
            if len(batch) > 1 and lane.predict_s >= self._gather_above_s:  # they send again together
                ended = time.perf_counter()
                window = min(max(self._max_wait_s, 2 * (ended - now)), 4 * self._max_wait_s)
                lane.gather_until = ended + window
            start = 0
            for item in batch:
                end = start + len(item.rows)
                if not item.future.done():  # the client may have gone away
                    item.future.set_result((version, node, {k: v[start:end] for k, v in outputs.items()}))
                start = end
        finally:
            self._finished(key, lane)

    @staticmethod
    async def _send_again_alone(lane: _Lane, item: _Waiting) -> None:
        if item.future.done():
            return
        current_request_id.set(item.request_id)  # a task of its own: the batch's id list stays
        request_deadline.set(item.deadline)
        try:
            with tracing.span("batch", {"modelfleet.batch.requests": 1}, parent=item.trace):
                answer = await lane.send(item.rows)
        except Exception as exc:
            _fail([item], exc)
        else:
            if not item.future.done():
                item.future.set_result(answer)


def _fail(batch: list[_Waiting], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _batch_span(batch: list[_Waiting]) -> AbstractContextManager[Any]:
    """Traced: each request's wait in the queue, then the batch it rode in (in the trace of its
    first sampled request, linked to every request's), under which the upstream call is made."""
    rows = sum(len(item.rows) for item in batch)
    for item in batch:
        with tracing.span("batch wait", parent=item.trace, start_ns=item.since_ns):
            pass
    return tracing.span(
        "batch",
        {"modelfleet.batch.requests": len(batch), "modelfleet.batch.rows": rows},
        parent=next((item.trace for item in batch if tracing.sampled(item.trace)), batch[0].trace),
        links=[item.trace for item in batch],
    )
