"""The autoscaler's loop in every gateway process, beside the request path, never in it.

Every interval each process publishes its own signals to the shared store and tries the lease; the
one that holds it reads the fleet's nodes, weighs the summed signals (inferrer/scaling/policy.py)
and records the desired node count, which what runs the nodes (the launcher) follows. A process that
dies stops renewing the lease, and another decides within `lease_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from inferrer.control.nodes import NodeStatus
from inferrer.errors import StoreUnreachable
from inferrer.scaling.policy import Autoscaler, Decision, Signals, expected_wait_s
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.scaling.store import ScaleEvent, ScaleState, ScalingStore
from metrics.scaling import ScalingMetrics
from wire.autoscaler_answers import NodeReport

logger = logging.getLogger(__name__)

COLD_START_ALPHA = 0.3  # each measured cold start moves the average 30% of the way
FRESH_INTERVALS = 4  # a process's signals count while younger than this many intervals


@dataclass(frozen=True)
class LocalSignals:
    """Where this process reads its own signals (the admission, the hold, the batcher), and the
    job partitions waiting in the shared job store (read by the deciding process only)."""

    in_flight: Callable[[], int]  # the most at once lately (a sample would miss bursts)
    held: Callable[[], int]
    batch_queued: Callable[[], int]
    partitions_waiting: Callable[[], Awaitable[int]]
    predict_s: Callable[[], float | None]


@dataclass(frozen=True)
class ScaleView:
    state: ScaleState | None  # None: nothing decided yet
    signals: Signals  # summed over the gateway processes, with the fleet's nodes
    expected_wait_s: float | None  # None: unbounded (work and no node ready)
    events: list[ScaleEvent]  # newest first
    decider: str | None  # the process holding the lease


class ScalingService:
    def __init__(
        self,
        store: ScalingStore,
        settings: AutoscaleSettings,
        local: LocalSignals,
        statuses: Callable[[], Awaitable[list[NodeStatus]]],
        metrics: ScalingMetrics,
        gateway: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self._local = local
        self._statuses = statuses
        self._metrics = metrics
        self.process = f"{gateway}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._autoscaler: Autoscaler | None = None  # while this process holds the lease
        self.state: ScaleState | None = None  # as last read or decided here

    @property
    def cold_start_s(self) -> float | None:
        return self.state.cold_start_s if self.state else None

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except SQLAlchemyError as exc:  # the store out of reach: try again next interval
                    logger.warning("autoscaler: the store did not answer: %s", exc)
                except Exception:  # never the loop's end: the next interval tries again
                    logger.exception("autoscaler: this interval failed")
                await asyncio.sleep(self.settings.interval_s)
        finally:
            with contextlib.suppress(SQLAlchemyError):
                await asyncio.to_thread(self.store.release_lease, self.process)
                await asyncio.to_thread(self.store.forget, self.process)

    async def tick(self) -> Decision | None:
        """Publish, then decide when this process holds the lease; the decision, if it made one."""
        local = self._local
        own = Signals(
            in_flight=local.in_flight(),
            held=local.held(),
            batch_queued=local.batch_queued(),
            predict_s=local.predict_s(),
        )
        await asyncio.to_thread(self.store.publish, self.process, own)
        decision = None
        if await asyncio.to_thread(self.store.take_lease, self.process, self.settings.lease_s):
            decision = await self._decide()
        else:
            self._autoscaler = None  # if it comes back, it starts from the fleet as it is then
        self.state = await asyncio.to_thread(self.store.load_state)
        if self.state is not None:
            self._metrics.desired.set(self.state.desired)
            self._metrics.nodes.set(self.state.nodes)
            self._metrics.max_nodes.set(self.settings.max_nodes)
        return decision

    async def _decide(self) -> Decision:
        statuses = await self._statuses()
        nodes = len(statuses)
        ready = sum(1 for s in statuses if s.ready and not s.draining)
        summed = await asyncio.to_thread(self.store.summed, FRESH_INTERVALS * self.settings.interval_s)
        previous = await asyncio.to_thread(self.store.load_state)
        partitions = await self._local.partitions_waiting()  # the fleet's, from the shared job store
        signals = Signals(
            summed.in_flight, summed.held, summed.batch_queued, partitions, nodes, ready,
            summed.predict_s, previous.cold_start_s if previous else None,
        )  # fmt: skip
        if self._autoscaler is None:  # the lease just taken: its windows start now, from the nodes there are
            self._autoscaler = Autoscaler(self.settings.limits)
            current = nodes
        else:  # what the last decision asked for (the nodes may still be starting or draining)
            current = previous.desired if previous else nodes
        decision = self._autoscaler.decide(signals, time.monotonic(), current)
        held = (decision.desired, nodes, ready, self.process, self.settings.lease_s)
        if not await asyncio.to_thread(self.store.save_state, *held):
            self._autoscaler = None  # the lease lapsed meanwhile: another process decides
            return Decision(current, "hold", "", "the lease lapsed")
        if decision.direction != "hold":
            logger.info("autoscaler: %s %d -> %d nodes: %s", decision.direction, current, decision.desired,
                        decision.reason)  # fmt: skip
            self._metrics.events.labels(decision.direction, decision.rule).inc()
            event = ScaleEvent(time.time(), decision.direction, decision.reason, current, decision.desired)
            await asyncio.to_thread(self.store.log, event)
        return decision

    async def record(self, report: NodeReport) -> None:
        """A node start or stop that the launcher reports: logged, and a start's time to ready
        moves the cold-start average."""
        try:
            await self._record(report)
        except SQLAlchemyError as exc:
            raise StoreUnreachable(f"the autoscaler's store did not answer: {type(exc).__name__}") from None

    async def _record(self, report: NodeReport) -> None:
        if report.outcome == "started":
            self._metrics.cold_start.observe(report.seconds)
            await asyncio.to_thread(self.store.add_cold_start, report.seconds, COLD_START_ALPHA)
        else:
            self._metrics.events.labels(report.outcome, "report").inc()
        reason = report.error or f"{report.node} {report.outcome.replace('_', ' ')}"
        event = ScaleEvent(time.time(), report.outcome, reason, node=report.node, seconds=report.seconds)
        await asyncio.to_thread(self.store.log, event)

    async def view(self) -> ScaleView:
        """What GET /api/v1/autoscaler shows."""
        fresh_s = FRESH_INTERVALS * self.settings.interval_s
        try:
            state, summed, events, decider, partitions = await asyncio.gather(
                asyncio.to_thread(self.store.load_state),
                asyncio.to_thread(self.store.summed, fresh_s),
                asyncio.to_thread(self.store.recent, 20),
                asyncio.to_thread(self.store.lease_holder),
                self._local.partitions_waiting(),
            )
        except SQLAlchemyError as exc:
            raise StoreUnreachable(f"the autoscaler's store did not answer: {type(exc).__name__}") from None
        if state is not None and self.settings.limits.enabled:
            nodes, ready, cold = state.nodes, state.ready_nodes, state.cold_start_s
        else:  # nothing decides: the nodes as they are now
            statuses = await self._statuses()
            nodes, ready = len(statuses), sum(1 for s in statuses if s.ready and not s.draining)
            cold = state.cold_start_s if state else None
        summed = Signals(summed.in_flight, summed.held, summed.batch_queued, partitions, nodes, ready,
                         summed.predict_s, cold)  # fmt: skip
        wait = expected_wait_s(summed)
        return ScaleView(state, summed, None if math.isinf(wait) else wait, events, decider)
