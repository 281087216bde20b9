"""What the watch routes do: create (checked, its local folder made), show, list, pause, resume,
delete."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath
from typing import Any

from datafiles.locations import LocationError, Storage
from inferrer.errors import InvalidInput, InvalidLocation, WatchNotFound
from inferrer.jobs.service import iso_time
from inferrer.state.repository import ModelRepository
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store import FILE_STATES, WatchStore
from inferrer.watches.supervisor import WatchSupervisor


class WatchService:
    def __init__(
        self, store: WatchStore, supervisor: WatchSupervisor, storage: Storage, repository: ModelRepository
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.storage = storage
        self.repository = repository

    async def create(self, spec: WatchSpec) -> dict[str, Any]:
        """The model (and version, if named) must exist; locations are checked as a job's are."""
        manifest = self.repository.get(spec.model, spec.version)
        if spec.prediction not in manifest.signature.outputs:
            raise InvalidInput(f"model {spec.model!r} offers {manifest.signature.outputs}")
        try:
            source = self.storage.location(spec.input)
            output = self.storage.location(spec.output)
        except LocationError as exc:
            raise InvalidLocation(str(exc)) from None
        inside = PurePosixPath(source.path).is_relative_to(output.path) and source.path != output.path
        if source.protocol == output.protocol and inside:
            raise InvalidLocation(
                f"{spec.input!r} is inside {spec.output!r}: outputs would come back as inputs"
            )
        await asyncio.to_thread(self.store.create, spec.name, spec.model_dump(mode="json", exclude_none=True))
        if source.protocol == "file":
            try:  # files may be dropped in as soon as the watch exists
                await asyncio.to_thread(Path(source.path).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                await asyncio.to_thread(self.store.delete, spec.name)
                raise InvalidLocation(f"cannot make the folder {spec.input!r}: {exc}") from None
        self.supervisor.wake(spec.name)
        return await self.summary(spec.name)

    async def view(self, name: str, state: str | None, limit: int) -> dict[str, Any]:
        """The watch and its files, newest first."""
        shown = await self.summary(name)
        files = await asyncio.to_thread(self.store.files, name, state, limit)
        return {**shown, "files": [_file(f) for f in files]}

    async def summary(self, name: str) -> dict[str, Any]:
        watch = await self._watch(name)
        return self._render(watch, await asyncio.to_thread(self.store.counts))

    async def listing(self) -> dict[str, Any]:
        watches = await asyncio.to_thread(self.store.watches)
        counts = await asyncio.to_thread(self.store.counts)
        return {"watches": [self._render(w, counts) for w in watches]}

    async def pause(self, name: str, paused: bool) -> dict[str, Any]:
        """Paused: no listing, no new job; jobs under way finish and their files are settled."""
        if not await asyncio.to_thread(self.store.set_paused, name, paused):
            raise WatchNotFound(f"no watch {name!r}")
        if not paused:
            self.supervisor.wake(name)
        return await self.summary(name)

    async def delete(self, name: str) -> dict[str, Any]:
        """Stops watching; outputs stay, and jobs under way run to their end."""
        shown = await self.summary(name)
        if not await asyncio.to_thread(self.store.delete, name):
            raise WatchNotFound(f"no watch {name!r}")
        return shown

    async def _watch(self, name: str) -> dict[str, Any]:
        watch = await asyncio.to_thread(self.store.watch, name)
        if watch is None:
            raise WatchNotFound(f"no watch {name!r}")
        return watch

    def _render(self, watch: dict[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        spec = WatchSpec.model_validate(watch["spec"])
        return {
            **spec.model_dump(mode="json"),
            "paused": watch["paused"],
            "detection": self.supervisor.detection(spec),
            "error": watch["error"],
            "counts": counts.get(spec.name, dict.fromkeys(FILE_STATES, 0)),
            "created": iso_time(watch["created"]),
        }


def _file(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"], "size": row["size"], "state": row["state"], "version": row["version"],
        "job": row["job_id"], "attempts": row["attempts"], "output": row["output"], "rows": row["rows"],
        "error": row["error"], "seen": iso_time(row["seen"]), "updated": iso_time(row["updated"]),
    }  # fmt: skip
