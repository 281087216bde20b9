"""Runs, in each gateway process, one consumer per binding that is not paused: it reads the
bindings from the broker every `refresh_s` (or when this process changed one), starts and stops
consumers to match, and publishes every binding's figures as metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from inferrer.streams.broker import TRANSIENT
from inferrer.streams.consumer import BindingConsumer
from inferrer.streams.records import BindingRecord
from inferrer.streams.registry import BindingRegistry
from metrics.streams import StreamMetrics

log = logging.getLogger("inferrer.streams")
_STOP_GRACE_S = 5.0


class StreamSupervisor:
    def __init__(
        self,
        registry: BindingRegistry,
        consumer_for: Callable[[BindingRecord], BindingConsumer],
        refresh_s: float,
        metrics: StreamMetrics,
    ) -> None:
        self.registry = registry
        self.consumer_for = consumer_for
        self.refresh_s = refresh_s
        self.metrics = metrics
        self._running: dict[str, tuple[float, BindingConsumer, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._published: set[str] = set()  # bindings whose figures are in the metrics

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="streams")

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._reconcile()
            except TRANSIENT as exc:
                log.warning("streams: the broker did not answer: %s", exc)
            except Exception:  # a bug must not end consumption for the process's life
                log.exception("streams: reconciling the bindings failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_s):
                    await self._wake.wait()

    async def _reconcile(self) -> None:
        records = await self.registry.all()
        wanted = {r.spec.name: r for r in records if not r.paused}
        for name, (created, _, task) in list(self._running.items()):
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("streams: the consumer of %s ended: %r; starting it again", name, task.exception())
            if name not in wanted or wanted[name].created != created or task.done():
                await self._stop(name)
        for name, record in wanted.items():
            if name not in self._running:
                consumer = self.consumer_for(record)
                task = asyncio.create_task(consumer.run(), name=f"stream {name}")
                self._running[name] = (record.created, consumer, task)
        for record in records:
            figures = await self.registry.figures(record.spec)
            name = record.spec.name
            if figures.lag is not None:
                self.metrics.lag.labels(name).set(figures.lag)
            self.metrics.pending.labels(name).set(figures.pending)
            self.metrics.dead_letters.labels(name).set(figures.dead_letters)
            self.metrics.per_second.labels(name).set(figures.per_second)
            self.metrics.open_groups.labels(name).set(figures.open_groups)
        for name in self._published - {r.spec.name for r in records}:
            self.metrics.forget(name)
        self._published = {r.spec.name for r in records}

    async def _stop(self, name: str) -> None:
        _, consumer, task = self._running.pop(name)
        await consumer.stop(task, _STOP_GRACE_S)

    async def close(self) -> None:
        """No new reads; batches under way get a grace to settle (the rest stay pending, taken over
        by another consumer once idle)."""
        self._closing = True
        self.wake()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=2 * self.refresh_s + 5)
            self._task.cancel()
        await asyncio.gather(*(self._stop(name) for name in list(self._running)))
