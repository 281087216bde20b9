"""One binding's consumer in one gateway process: it reads batches (at most `batches_in_flight` at
once), hands each to the binding's handler and settles it; it keeps its messages' idle time fresh
while it works, takes over messages that stopped consumers left, and dead-letters a message whose
consumer stopped `max_deliveries` times.

A failure of the fleet or of the broker is not the message's fault: the batch is tried again, with
a growing pause, for as long as the binding runs (the binding shows the error meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from inferrer.errors import InferrerError, UpstreamAnswered
from inferrer.streams.broker import TRANSIENT
from inferrer.streams.group_reader import GroupReader, dead_letter
from inferrer.streams.handlers import Converging, Handled
from inferrer.streams.records import StreamMessage
from metrics.streams import StreamMetrics

log = logging.getLogger("inferrer.streams")
_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class Handler(Protocol):
    async def handle(self, messages: list[StreamMessage]) -> Handled: ...


class BindingConsumer:
    def __init__(
        self,
        reader: GroupReader,
        handler: Handler,
        batches_in_flight: int,
        claim_idle_s: float,
        metrics: StreamMetrics,
    ) -> None:
        self.reader = reader
        self.handler = handler
        self.name = reader.spec.name
        self._slots = asyncio.Semaphore(batches_in_flight)
        self._claim_idle_s = claim_idle_s
        self._metrics = metrics
        self._held: set[str] = set()  # ids this consumer is working on
        self._work: set[asyncio.Task[None]] = set()
        self._failing = False
        self._stopping = False

    async def run(self) -> None:
        """Read until cancelled; the housekeeping runs beside the reads."""
        keeper = asyncio.create_task(self._keep_house(), name=f"stream {self.name} housekeeping")
        try:
            await self._read_forever()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def stop(self, running: asyncio.Task[None], grace_s: float) -> None:
        """No new reads (a read under way ends within its block time); batches under way get
        `grace_s` to settle, and the rest stay pending for another consumer. Never waits longer."""
        self._stopping = True
        try:
            await asyncio.wait({running}, timeout=grace_s)
            if self._work:
                await asyncio.wait(self._work, timeout=grace_s)
        finally:  # even when the stop itself is cancelled
            for task in (running, *self._work):
                task.cancel()

    async def _read_forever(self) -> None:
        failures = 0
        while not self._stopping:
            await self._slots.acquire()
            try:
                messages = await self.reader.read()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:  # the broker gone a while (restarted, a link down), or a bug
                self._slots.release()
                if isinstance(exc, TRANSIENT):
                    log.warning("stream %s: reading failed: %s", self.name, exc)
                else:
                    log.exception("stream %s: reading failed", self.name)
                await asyncio.sleep(_PAUSES_S[min(failures, len(_PAUSES_S) - 1)])
                failures += 1
                continue
            failures = 0
            if not messages or self._stopping:  # read while stopping: pending, taken over later
                self._slots.release()
                continue
            self._spawn(messages, release=True)

    def _spawn(self, messages: list[StreamMessage], release: bool) -> None:
        task = asyncio.create_task(self._settle(messages, release), name=f"stream {self.name} batch")
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _settle(self, messages: list[StreamMessage], release: bool) -> None:
        ids = [m.id for m in messages]
        self._held.update(ids)
        try:
            await self._until_settled(messages, ids)
        finally:
            self._held.difference_update(ids)
            if release:
                self._slots.release()

    async def _until_settled(self, messages: list[StreamMessage], ids: list[str]) -> None:
        """Tried until settled while the binding runs. A batch that keeps failing is split in two
        (each half tried in turn), so one message that breaks the fleet cannot hold the others;
        such a message alone, refused by a node `max_deliveries` times, is dead-lettered."""
        attempt = 0
        while not self._stopping:
            try:
                handled = await self.handler.handle(messages)
                written, dead, duplicates = (
                    await self.reader.settle(handled.settled) if handled.settled else (0, 0, 0)
                )
            except Exception as exc:  # the fleet's, the broker's, or a bug: the batch waits, not lost
                if not isinstance(exc, (InferrerError, *TRANSIENT)):
                    log.exception("stream %s: a batch failed", self.name)
                reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                await self._failed(ids, reason)
                attempt += 1
                if attempt >= self.reader.spec.max_deliveries and len(messages) > 1:
                    half = len(messages) // 2  # in this task: the batch's slot stays taken
                    await self._until_settled(messages[:half], ids[:half])
                    await self._until_settled(messages[half:], ids[half:])
                    return
                if attempt >= self.reader.spec.max_deliveries and _breaks_the_node(exc):
                    letter = dead_letter(
                        messages[0], self.reader.spec, f"a node failed on it {attempt} times: {reason}"
                    )
                    with contextlib.suppress(Exception):
                        _, dead, _ = await self.reader.settle([letter])
                        self._metrics.messages.labels(self.name, "dead_letter").inc(dead)
                        return
                await asyncio.sleep(_PAUSES_S[min(attempt - 1, len(_PAUSES_S) - 1)])
                continue
            self._count(messages, handled, written, dead, duplicates)
            if self._failing:
                with contextlib.suppress(Exception):
                    await self.reader.recovered()
                    self._failing = False
            return

    async def _failed(self, ids: list[str], reason: str) -> None:
        log.warning("stream %s: %d messages wait to be tried again: %s", self.name, len(ids), reason)
        self._metrics.messages.labels(self.name, "retried").inc(len(ids))
        self._failing = True
        try:
            await self.reader.failed(ids, reason)
        except Exception as exc:  # recorded for the view only: the batch is tried again regardless
            log.warning("stream %s: could not record the failure: %s", self.name, exc)

    def _count(
        self, messages: list[StreamMessage], handled: Handled, written: int, dead: int, duplicates: int
    ) -> None:
        metric = self._metrics.messages
        for outcome, count in (
            ("output", written), ("dead_letter", dead), ("duplicate", duplicates + handled.duplicates),
            ("converged", handled.joined),
        ):  # fmt: skip
            if count:
                metric.labels(self.name, outcome).inc(count)
        now_ms = time.time() * 1000
        latency = self._metrics.latency.labels(self.name)
        for message in messages:
            latency.observe(max(0.0, now_ms - message.produced_ms) / 1000)

    async def _keep_house(self) -> None:
        """Every third of the claim time: refresh what this consumer holds, take over what stopped
        consumers left (when a batch slot is free: takeovers count against the same bound), close
        converge groups past their timeout, and forget consumers long gone."""
        every_s = self._claim_idle_s / 3
        rounds = 0
        while not self._stopping:
            await asyncio.sleep(every_s)
            rounds += 1
            try:
                await self.reader.keep(sorted(self._held))
                if not self._slots.locked():
                    await self._slots.acquire()
                    await self._take_over()
                if isinstance(self.handler, Converging):
                    await self.handler.close_expired()
                if rounds % 30 == 0:
                    await self.reader.forget_gone_consumers(30 * self._claim_idle_s)
            except Exception as exc:
                if isinstance(exc, TRANSIENT):
                    log.warning("stream %s: housekeeping failed: %s", self.name, exc)
                else:
                    log.exception("stream %s: housekeeping failed", self.name)

    async def _take_over(self) -> None:
        """With one batch slot taken: released here, or by the batch taken over."""
        try:
            retry, spent = await self.reader.stalled()
            if spent:
                reasons = await self.reader.reasons([m.id for m in spent])
                letters = [
                    dead_letter(m, self.reader.spec, _spent_reason(m, reason))
                    for m, reason in zip(spent, reasons, strict=True)
                ]
                _, dead, _ = await self.reader.settle(letters)
                self._metrics.messages.labels(self.name, "dead_letter").inc(dead)
        except BaseException:
            self._slots.release()
            raise
        if not retry:
            self._slots.release()
            return
        self._metrics.messages.labels(self.name, "taken_over").inc(len(retry))
        self._spawn(retry, release=True)


def _breaks_the_node(exc: Exception) -> bool:
    """A node answered 500 (its model raised) or the node died under it (502): perhaps this message's
    doing, unlike an outage (no node, a timeout, the broker), which is never a message's fault."""
    return isinstance(exc, UpstreamAnswered) and exc.status_code in (500, 502)


def _spent_reason(message: StreamMessage, last: str | None) -> str:
    said = f"delivered {message.deliveries - 1} times without being settled (its consumers stopped or hung)"
    return f"{said}; the last failure: {last}" if last else said
