"""Runs every watch in the store, in each gateway process: lists the watched places and records
the files found whole, turns pending files into jobs (never more than WATCH_MAX_RUNNING files at
once across the fleet: the rest wait, pending), and settles each file when its job ends.

A file is `done` once its job has succeeded, and a watch's job succeeds only once its output file
has been written and read back whole (jobs.outputs). A failed job puts the file back to pending
after a backoff while attempts remain; then it is `failed`, with the reason: the dead letter list.
A file whose content cannot make a job (an unknown format, not parquet, vanished) fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from datafiles.locations import LocationError, Storage
from inferrer.errors import InferrerError, InputNotFound, InvalidInput
from inferrer.jobs.service import JobService
from inferrer.state.repository import ModelRepository
from inferrer.watches.detection import FolderListener, Settling
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store import FILE_STATES, WatchStore
from metrics.definitions import WatchMetrics

logger = logging.getLogger(__name__)

_RETRY_BASE_S = 2.0
_RETRY_MAX_S = 60.0
_GAUGE_S = 5.0
_CLAIMS_PER_STEP = 32


@dataclass(frozen=True)
class WatchLimits:
    interval_s: float  # between two listings of a watched place (inotify wakes a local one sooner)
    settle_s: float  # a file is taken once unchanged for this long
    max_running: int  # files with a job under way, fleet-wide
    claim_lease_s: float  # a claimer that died is taken over after this (JOBS_LEASE_S)
    step_s: float = 0.5  # how often jobs' ends are looked for


class LostClaim(Exception):
    """Another gateway took the file's claim over: it makes the job."""


class WatchSupervisor:
    def __init__(
        self,
        store: WatchStore,
        jobs: JobService,
        storage: Storage,
        repository: ModelRepository,
        limits: WatchLimits,
        metrics: WatchMetrics,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.storage = storage
        self.repository = repository
        self.limits = limits
        self.metrics = metrics
        self._settling: dict[str, Settling] = {}
        self._next_listing: dict[str, float] = {}
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

    def detection(self, spec: WatchSpec) -> str:
        """How this process finds the watch's files: inotify (with the interval's listings behind
        it), polling (listings only), or listing (an object store)."""
        if spec.input.startswith("s3://"):
            return "listing"
        return "inotify" if self._listener and self._listener.watching(spec.name) else "polling"

    async def run_forever(self) -> None:
        self._listener = FolderListener(self.wake, asyncio.get_running_loop())
        while not self._stopping:
            try:
                await self._step()
            except Exception:
                logger.exception("the watch supervisor's step failed; it goes on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.step_s)
            self._wake.clear()

    async def _step(self) -> None:
        watches = await asyncio.to_thread(self.store.watches)
        self._track({w["name"]: WatchSpec.model_validate(w["spec"]) for w in watches})
        if not watches:  # nothing to list, claim or settle: no more reads this step
            self.metrics.files.clear()
            return
        for watch in watches:
            if not watch["paused"] and time.monotonic() >= self._next_listing.get(watch["name"], 0.0):
                await self._guarded(self._scan(watch), f"watch {watch['name']}: listing")
        for file in await asyncio.to_thread(self.store.lapsed):
            if taken := await asyncio.to_thread(self.store.take_over, file, self.limits.claim_lease_s):
                await self._guarded(self._start(taken), f"watch {file['watch']}: {file['name']}")
        ended = await asyncio.to_thread(self.store.ended_jobs)
        for file in ended:  # first: their room goes to others
            await self._guarded(self._settle(file), f"watch {file['watch']}: {file['name']}")
        claims = await asyncio.to_thread(
            self.store.claim, _CLAIMS_PER_STEP, self.limits.claim_lease_s, self.limits.max_running
        )
        for file in claims:
            await self._guarded(self._start(file), f"watch {file['watch']}: {file['name']}")
        if ended or claims or time.monotonic() >= self._next_gauge:  # at most every _GAUGE_S when idle
            self._next_gauge = time.monotonic() + _GAUGE_S
            counts = await asyncio.to_thread(self.store.counts)
            self.metrics.files.clear()
            for watch in watches:
                for state in FILE_STATES:
                    count = counts.get(watch["name"], {}).get(state, 0)
                    self.metrics.files.labels(watch["name"], state).set(count)

    @staticmethod
    async def _guarded(step: Awaitable[None], what: str) -> None:
        """One watch's or one file's step: its failure (a database hiccup, a file name the store
        cannot hold) is logged, and the others go on."""
        try:
            await step
        except Exception:
            logger.exception("%s failed; tried again later", what)

    def _track(self, specs: dict[str, WatchSpec]) -> None:
        """Settling state for the watches there are, and inotify on their local folders."""
        for gone in set(self._settling) - set(specs):
            del self._settling[gone]
            self._next_listing.pop(gone, None)
        local = {}
        for name, spec in specs.items():
            self._settling.setdefault(name, Settling(self.limits.settle_s))
            if not spec.input.startswith("s3://"):
                with contextlib.suppress(LocationError):  # a folder become a link out: its listing says so
                    local[name] = Path(self.storage.location(spec.input).path)
        if self._listener is not None:
            self._listener.follow(local, time.monotonic())

    async def _scan(self, watch: dict[str, Any]) -> None:
        name = watch["name"]
        spec = WatchSpec.model_validate(watch["spec"])
        now = time.monotonic()
        self._next_listing[name] = now + self.limits.interval_s
        try:
            entries = await asyncio.to_thread(self.storage.files_in, self.storage.location(spec.input))
        except Exception as exc:  # a bucket gone, credentials refused: shown on the watch
            await asyncio.to_thread(self.store.set_error, name, f"cannot list {spec.input!r}: {exc}")
            return
        if watch["error"] is not None:
            await asyncio.to_thread(self.store.set_error, name, None)
        known = await asyncio.to_thread(self.store.known, name)
        fresh = [e for e in entries if spec.takes(e.name) and (e.name, e.identity) not in known]
        settling = self._settling[name]
        whole = settling.settled(fresh, now)
        if whole:
            self.metrics.detected.inc(await asyncio.to_thread(self.store.record, name, whole))
            settling.forget({e.name for e in whole})
        soonest = settling.next_check()
        if soonest is not None:
            self._next_listing[name] = min(self._next_listing[name], soonest)

    async def _start(self, file: dict[str, Any]) -> None:
        """Make the job of a claimed file (again, under the same id, if its claimer died)."""
        watch = await asyncio.to_thread(self.store.watch, file["watch"])
        if watch is None:
            return  # deleted meanwhile, with its files
        spec = WatchSpec.model_validate(watch["spec"])
        job_id = file["job_id"]
        try:
            version = file["version"]
            if version is None:  # fixed once, when the file is picked up
                version = self.repository.get(spec.model, spec.version).version
                if not await asyncio.to_thread(
                    self.store.assign, file, self.limits.claim_lease_s, version=version
                ):
                    return  # taken over: the new claimer makes this same job
            output = file["output"] or await self._reserve_output(file, spec, version)
            if await asyncio.to_thread(self.jobs.store.job, job_id) is None:
                await self._check_unchanged(file, spec)
            await self.jobs.submit(
                spec.submission(file["name"], version, job_id), job_id=job_id, assemble_to=output
            )
        except LostClaim:
            return
        except (InvalidInput, InputNotFound) as exc:  # the file itself: another attempt changes nothing
            await self._retry_or_fail({**file, "attempts": spec.max_attempts}, file, exc.message)
            return
        except Exception as exc:  # the model gone, storage down: worth another attempt
            reason = exc.message if isinstance(exc, InferrerError) else repr(exc)
            await self._retry_or_fail(file, file, f"its job could not be made: {reason}")
            return
        if await asyncio.to_thread(self.store.submitted, file):
            logger.info("watch %s: %s → job %s", file["watch"], file["name"], job_id)

    async def _check_unchanged(self, file: dict[str, Any], spec: WatchSpec) -> None:
        """The file is still the version recorded: one written again meanwhile is a new version,
        recorded and processed on its own, and this one is gone."""
        location = self.storage.location(f"{spec.input.rstrip('/')}/{file['name']}")
        try:
            identity = await asyncio.to_thread(self.storage.identity, location)
        except FileNotFoundError:
            raise InputNotFound(f"{file['name']!r} was removed before its job began") from None
        if identity != file["identity"]:
            raise InvalidInput(
                f"{file['name']!r} was written again before its job began: the new version is "
                "processed on its own"
            )

    async def _reserve_output(self, file: dict[str, Any], spec: WatchSpec, version: str) -> str:
        """The file's output name, held in the store for good: the first revision neither written
        already nor held by another file."""
        for revision in range(1, 10_000):
            candidate = spec.output_file(file["name"], version, revision)
            location = self.storage.location(candidate)
            filesystem = self.storage.filesystem(location)
            if await asyncio.to_thread(filesystem.exists, location.path):
                continue
            try:
                held = await asyncio.to_thread(
                    self.store.assign, file, self.limits.claim_lease_s, output=candidate
                )
            except sa.exc.IntegrityError:
                continue
            if not held:
                raise LostClaim
            return candidate
        raise InvalidInput(f"{file['name']!r} has 10,000 outputs already")

    async def _settle(self, ended: dict[str, Any]) -> None:
        if ended["job_status"] == "succeeded":
            if await asyncio.to_thread(
                self.store.settle, ended, "done", rows=ended["job_result"]["rows"], error=None
            ):
                logger.info("watch %s: %s done", ended["watch"], ended["name"])
            return
        watch = await asyncio.to_thread(self.store.watch, ended["watch"])
        if watch is not None:  # the failed attempt's parts go; the next attempt writes its own
            staging = self.storage.location(WatchSpec.model_validate(watch["spec"]).staging(ended["job_id"]))
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.storage.remove_tree, staging)
        await self._retry_or_fail(ended, ended, ended["job_error"] or f"its job was {ended['job_status']}")

    async def _retry_or_fail(self, counted: dict[str, Any], file: dict[str, Any], reason: str) -> None:
        """Another attempt after a backoff, or failed for good once `counted` has used them all."""
        watch = await asyncio.to_thread(self.store.watch, file["watch"])
        allowed = int(watch["spec"].get("max_attempts", 3)) if watch else 1
        if counted["attempts"] >= allowed:
            if await asyncio.to_thread(self.store.settle, file, "failed", error=reason):
                logger.warning("watch %s: %s failed: %s", file["watch"], file["name"], reason)
            return
        backoff = min(_RETRY_BASE_S * 2 ** (file["attempts"] - 1), _RETRY_MAX_S)
        if await asyncio.to_thread(
            self.store.settle, file, "pending", error=reason, not_before=time.time() + backoff
        ):
            logger.warning("watch %s: %s: %s; again in %.0fs", file["watch"], file["name"], reason, backoff)

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
