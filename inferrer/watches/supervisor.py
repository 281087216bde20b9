"""Runs every watch in the store, in each gateway process: lists the watched places and records
the files found whole, turns pending files into jobs (never more than WATCH_MAX_RUNNING files at
once across the fleet: the rest wait, pending), and settles each file when its job ends
(watches.processing)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from inferrer.watches.detection import FolderListener, Settling
from inferrer.watches.places import WatchedPlaces
from inferrer.watches.processing import FileProcessor
from inferrer.watches.records import FILE_STATES, Watch
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store_async import AsyncWatchStore
from metrics.definitions import WatchMetrics
from wire.watch_answers import Detection

logger = logging.getLogger(__name__)

_GAUGE_S = 5.0
_IDLE_STEP_S = 2.0
_MIN_PAUSE_S = 0.01
_CLAIMS_PER_STEP = 32


@dataclass(frozen=True)
class WatchLimits:
    interval_s: float  # between two listings of a watched place (inotify wakes a local one sooner)
    settle_s: float  # a file is taken once unchanged for this long
    max_running: int  # files with a job under way, fleet-wide
    claim_lease_s: float  # a claimer that died is taken over after this (JOBS_LEASE_S)
    step_s: float = 0.5  # how often jobs' ends are looked for


class WatchSupervisor:
    def __init__(
        self,
        store: AsyncWatchStore,
        processor: FileProcessor,
        places: WatchedPlaces,
        limits: WatchLimits,
        metrics: WatchMetrics,
    ) -> None:
        self.store = store
        self.processor = processor
        self.places = places
        self.limits = limits
        self.metrics = metrics
        self._settling: dict[str, Settling] = {}
        self._next_listing: dict[str, float] = {}
        self._paused: set[str] = set()
        self._listener: FolderListener | None = None  # made on the event loop, in run_forever
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_gauge = 0.0

    def wake(self, name: str | None = None) -> None:
        """List `name` (or every watch) now, and look for work."""
        for watch in [name] if name else list(self._next_listing):
            self._next_listing[watch] = 0.0
        self._wake.set()

    def wake_for_work(self) -> None:
        """A job ended: settle its file and claim the next, without listing anything."""
        self._wake.set()

    def detection(self, spec: WatchSpec) -> Detection:
        """How this process finds the watch's files: inotify (with the interval's listings behind
        it), polling (listings only), or listing (an object store)."""
        if spec.input.startswith("s3://"):
            return "listing"
        return "inotify" if self._listener and self._listener.watching(spec.name) else "polling"

    async def run_forever(self) -> None:
        self._listener = FolderListener(self.wake, asyncio.get_running_loop())
        idle_steps = 0
        while not self._stopping:
            try:
                idle_steps = 0 if await self._step() else idle_steps + 1
            except Exception:
                logger.exception("the watch supervisor's step failed; it goes on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._pause_s(idle_steps))
            self._wake.clear()

    def _pause_s(self, idle_steps: int) -> float:
        """Until the next step: `step_s`, longer after steps that found nothing to do (up to
        _IDLE_STEP_S: this process's own job ends and files wake it at once), never past a
        listing that is due."""
        pause = min(self.limits.step_s * (1 + idle_steps), max(self.limits.step_s, _IDLE_STEP_S))
        due = [at for name, at in self._next_listing.items() if name not in self._paused]
        if due:
            pause = min(pause, min(due) - time.monotonic())
        return max(pause, _MIN_PAUSE_S)

    async def _step(self) -> bool:
        """One look at every watch; whether it found anything to do."""
        watches = await self.store.watches()
        self._track(watches)
        self._paused = {watch.name for watch in watches if watch.paused}  # never listed: not due
        if not watches:  # nothing to list, claim or settle: no more reads this step
            self.metrics.files.clear()
            return False
        for watch in watches:
            if not watch.paused and time.monotonic() >= self._next_listing.get(watch.name, 0.0):
                await self._guarded(self._scan(watch), f"watch {watch.name}: listing")
        lapsed = await self.store.lapsed()
        for file in lapsed:
            if taken := await self.store.take_over(file, self.limits.claim_lease_s):
                await self._guarded(self.processor.start(taken), f"watch {file.watch}: {file.name}")
        ended = await self.store.ended_jobs()
        for end in ended:  # first: their room goes to others
            await self._guarded(self.processor.settle(end), f"watch {end.file.watch}: {end.file.name}")
        claims = await self.store.claim(_CLAIMS_PER_STEP, self.limits.claim_lease_s, self.limits.max_running)
        for file in claims:
            await self._guarded(self.processor.start(file), f"watch {file.watch}: {file.name}")
        if ended or claims or time.monotonic() >= self._next_gauge:  # at most every _GAUGE_S when idle
            self._next_gauge = time.monotonic() + _GAUGE_S
            counts = await self.store.counts()
            self.metrics.files.clear()
            for watch in watches:
                for state in FILE_STATES:
                    self.metrics.files.labels(watch.name, state).set(counts.get(watch.name, {}).get(state, 0))
        return bool(lapsed or ended or claims)

    @staticmethod
    async def _guarded(step: Awaitable[None], what: str) -> None:
        """One watch's or one file's step: its failure (a database hiccup, a file name the store
        cannot hold) is logged, and the others go on."""
        try:
            await step
        except Exception:
            logger.exception("%s failed; tried again later", what)

    def _track(self, watches: list[Watch]) -> None:
        """Settling state for the watches there are, and inotify on their local folders."""
        names = {watch.name for watch in watches}
        for gone in set(self._settling) - names:
            del self._settling[gone]
            self._next_listing.pop(gone, None)
        local: dict[str, Path] = {}
        for watch in watches:
            self._settling.setdefault(watch.name, Settling(self.limits.settle_s))
            if (folder := self.places.folder(watch.spec)) is not None:
                local[watch.name] = folder
        if self._listener is not None:
            self._listener.follow(local, time.monotonic())

    async def _scan(self, watch: Watch) -> None:
        name, spec = watch.name, watch.spec
        now = time.monotonic()
        self._next_listing[name] = now + self.limits.interval_s
        try:
            entries = await self.places.listing(spec)
        except Exception as exc:  # a bucket gone, credentials refused: shown on the watch
            await self.store.set_error(name, f"cannot list {spec.input!r}: {exc}")
            return
        if watch.error is not None:
            await self.store.set_error(name, None)
        known = await self.store.known(name)
        fresh = [e for e in entries if spec.takes(e.name) and (e.name, e.identity) not in known]
        settling = self._settling[name]
        whole = settling.settled(fresh, now)
        if whole:
            self.metrics.detected.inc(await self.store.record(name, whole))
            settling.forget({e.name for e in whole})
        soonest = settling.next_check()
        if soonest is not None:
            self._next_listing[name] = min(self._next_listing[name], soonest)

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
