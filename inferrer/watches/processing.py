"""A watched file's way through its job: the job made for a claimed file (again, under the same id,
if its claimer died), and the file settled when that job ends.

A file is `done` once its job has succeeded, and a watch's job succeeds only once its output file
has been written and read back whole (jobs.outputs). A failed job puts the file back to pending
after a backoff while attempts remain; then it is `failed`, with the reason: the dead letter list.
A file whose content cannot make a job (an unknown format, not parquet, vanished) fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import time

import sqlalchemy as sa

from inferrer.errors import InferrerError, InputNotFound, InvalidInput
from inferrer.jobs.service import JobService
from inferrer.jobs.targets import resolve_target
from inferrer.state.repository import ModelRepository
from inferrer.watches.places import WatchedPlaces
from inferrer.watches.records import EndedFile, WatchedFile
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store_async import AsyncWatchStore

logger = logging.getLogger(__name__)

_RETRY_BASE_S = 2.0
_RETRY_MAX_S = 60.0


class LostClaim(Exception):
    """Another gateway took the file's claim over: it makes the job."""


class FileProcessor:
    def __init__(
        self,
        store: AsyncWatchStore,
        jobs: JobService,
        places: WatchedPlaces,
        repository: ModelRepository,
        claim_lease_s: float,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.places = places
        self.repository = repository
        self.claim_lease_s = claim_lease_s

    async def start(self, file: WatchedFile) -> None:
        """Make the job of a claimed file (again, under the same id, if its claimer died)."""
        watch = await self.store.watch(file.watch)
        if watch is None:
            return  # deleted meanwhile, with its files
        spec, job_id = watch.spec, file.job_id
        assert job_id is not None  # fixed with the claim
        try:
            version = file.version
            if version is None:  # fixed once, when the file is picked up
                version = (
                    await resolve_target(
                        self.repository,
                        self.jobs.graphs,
                        spec.model,
                        spec.graph,
                        spec.version,
                        spec.prediction,
                    )
                ).version
                if not await self.store.assign(file, self.claim_lease_s, version=version):
                    return  # taken over: the new claimer makes this same job
            output = file.output_location or await self._reserve_output(file, spec, version)
            if await self.jobs.find(job_id) is None:
                await self._check_unchanged(file, spec)
            await self.jobs.submit(
                spec.submission(file.name, version, job_id), job_id=job_id, assemble_to=output
            )
        except LostClaim:
            return
        except (InvalidInput, InputNotFound) as exc:  # the file itself: another attempt changes nothing
            await self._retry_or_fail(file, exc.message, spec.max_attempts, final=True)
            return
        except Exception as exc:  # the model gone, storage down: worth another attempt
            reason = exc.message if isinstance(exc, InferrerError) else repr(exc)
            await self._retry_or_fail(file, f"its job could not be made: {reason}", spec.max_attempts)
            return
        if await self.store.submitted(file):
            logger.info("watch %s: %s → job %s", file.watch, file.name, job_id)

    async def _check_unchanged(self, file: WatchedFile, spec: WatchSpec) -> None:
        """The file is still the version recorded: one written again meanwhile is a new version,
        recorded and processed on its own, and this one is gone."""
        try:
            identity = await self.places.identity(spec, file.name)
        except FileNotFoundError:
            raise InputNotFound(f"{file.name!r} was removed before its job began") from None
        if identity != file.identity:
            raise InvalidInput(
                f"{file.name!r} was written again before its job began: the new version is "
                "processed on its own"
            )

    async def _reserve_output(self, file: WatchedFile, spec: WatchSpec, version: str) -> str:
        """The file's output name, held in the store for good: the first revision neither written
        already nor held by another file."""
        for revision in range(1, 10_000):
            candidate = spec.output_file(file.name, version, revision)
            if await self.places.taken(candidate):
                continue
            try:
                held = await self.store.assign(file, self.claim_lease_s, output=candidate)
            except sa.exc.IntegrityError:
                continue
            if not held:
                raise LostClaim
            return candidate
        raise InvalidInput(f"{file.name!r} has 10,000 outputs already")

    async def settle(self, ended: EndedFile) -> None:
        file = ended.file
        if ended.job_status == "succeeded":
            if await self.store.done(file, ended.job_rows):
                logger.info("watch %s: %s done", file.watch, file.name)
            return
        watch = await self.store.watch(file.watch)
        if watch is not None and file.job_id is not None:  # the failed attempt's parts go
            with contextlib.suppress(OSError):
                await self.places.remove(watch.spec.staging(file.job_id))
        reason = ended.job_error or f"its job was {ended.job_status}"
        await self._retry_or_fail(file, reason, watch.spec.max_attempts if watch else 1)

    async def _retry_or_fail(self, file: WatchedFile, reason: str, allowed: int, final: bool = False) -> None:
        """Another attempt after a backoff, or failed for good: `final`, or its attempts all used."""
        if final or file.attempts >= allowed:
            if await self.store.fail(file, reason):
                logger.warning("watch %s: %s failed: %s", file.watch, file.name, reason)
            return
        backoff = min(_RETRY_BASE_S * 2 ** (file.attempts - 1), _RETRY_MAX_S)
        if await self.store.retry(file, reason, time.time() + backoff):
            logger.warning("watch %s: %s: %s; again in %.0fs", file.watch, file.name, reason, backoff)
