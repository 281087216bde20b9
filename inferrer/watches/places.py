"""The watched places and the outputs of watches, for the event loop: listings, a file's identity,
an output's place, each storage call in a worker thread (jobs.store_async.off_loop)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from datafiles.locations import FileEntry, LocationError, Storage
from inferrer.jobs.store_async import off_loop
from inferrer.watches.spec import WatchSpec


class WatchedPlaces:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def folder(self, spec: WatchSpec) -> Path | None:
        """A local watch's folder (None: an object store, or a place that is no folder of ours)."""
        if spec.input.startswith("s3://"):
            return None
        with contextlib.suppress(LocationError):  # a folder become a link out: its listing says so
            return Path(self.storage.location(spec.input).path)
        return None

    async def make_folder(self, spec: WatchSpec) -> None:
        """A local watch's folder, made with the watch: files may be dropped in at once."""
        if (folder := self.folder(spec)) is not None:
            await off_loop(folder.mkdir, parents=True, exist_ok=True)

    async def listing(self, spec: WatchSpec) -> list[FileEntry]:
        return await off_loop(self.storage.files_in, self.storage.location(spec.input))

    async def identity(self, spec: WatchSpec, name: str) -> str:
        """The version of a file there now (FileNotFoundError: it is gone)."""
        return await off_loop(self.storage.identity, self.storage.location(spec.located(name)))

    async def taken(self, location: str) -> bool:
        """Whether something is there already."""
        place = self.storage.location(location)
        return await off_loop(self.storage.filesystem(place).exists, place.path)

    async def remove(self, location: str) -> None:
        await off_loop(self.storage.remove_tree, self.storage.location(location))
