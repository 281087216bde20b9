"""The watch store for the event loop: each statement in a worker thread, never on the loop itself."""

from __future__ import annotations

from datafiles.locations import FileEntry
from inferrer.jobs.store_async import off_loop
from inferrer.watches.records import EndedFile, FileState, Watch, WatchedFile
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store import WatchStore


class AsyncWatchStore:
    def __init__(self, store: WatchStore) -> None:
        self._store = store

    async def create(self, spec: WatchSpec) -> None:
        await off_loop(self._store.create, spec)

    async def watches(self) -> list[Watch]:
        return await off_loop(self._store.watches)

    async def watch(self, name: str) -> Watch | None:
        return await off_loop(self._store.watch, name)

    async def set_paused(self, name: str, paused: bool) -> bool:
        return await off_loop(self._store.set_paused, name, paused)

    async def set_error(self, name: str, error: str | None) -> None:
        await off_loop(self._store.set_error, name, error)

    async def delete(self, name: str) -> bool:
        return await off_loop(self._store.delete, name)

    async def known(self, watch: str) -> set[tuple[str, str]]:
        return await off_loop(self._store.known, watch)

    async def record(self, watch: str, entries: list[FileEntry]) -> int:
        return await off_loop(self._store.record, watch, entries)

    async def claim(self, limit: int, lease_s: float, max_running: int) -> list[WatchedFile]:
        return await off_loop(self._store.claim, limit, lease_s, max_running)

    async def lapsed(self) -> list[WatchedFile]:
        return await off_loop(self._store.lapsed)

    async def take_over(self, file: WatchedFile, lease_s: float) -> WatchedFile | None:
        return await off_loop(self._store.take_over, file, lease_s)

    async def assign(
        self, file: WatchedFile, lease_s: float, version: str | None = None, output: str | None = None
    ) -> bool:
        return await off_loop(self._store.assign, file, lease_s, version, output)

    async def submitted(self, file: WatchedFile) -> bool:
        return await off_loop(self._store.submitted, file)

    async def ended_jobs(self) -> list[EndedFile]:
        return await off_loop(self._store.ended_jobs)

    async def done(self, file: WatchedFile, rows: int | None) -> bool:
        return await off_loop(self._store.done, file, rows)

    async def retry(self, file: WatchedFile, error: str, not_before: float) -> bool:
        return await off_loop(self._store.retry, file, error, not_before)

    async def fail(self, file: WatchedFile, error: str) -> bool:
        return await off_loop(self._store.fail, file, error)

    async def files(self, watch: str, state: FileState | None, limit: int) -> list[WatchedFile]:
        return await off_loop(self._store.files, watch, state, limit)

    async def counts(self) -> dict[str, dict[str, int]]:
        return await off_loop(self._store.counts)
