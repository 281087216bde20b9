"""What the watch routes do: create (checked, its local folder made), show, list, pause, resume,
delete."""

from __future__ import annotations

from pathlib import PurePosixPath

from datafiles.locations import LocationError, Storage
from inferrer.errors import InvalidLocation, WatchNotFound
from inferrer.graphs.service import GraphService
from inferrer.jobs.service import iso_time
from inferrer.jobs.targets import resolve_target
from inferrer.state.repository import ModelRepository
from inferrer.watches.places import WatchedPlaces
from inferrer.watches.records import FILE_STATES, FileState, Watch, WatchedFile
from inferrer.watches.spec import WatchSpec
from inferrer.watches.store_async import AsyncWatchStore
from inferrer.watches.supervisor import WatchSupervisor
from wire import watch_answers as answers


class WatchService:
    def __init__(
        self,
        store: AsyncWatchStore,
        supervisor: WatchSupervisor,
        places: WatchedPlaces,
        storage: Storage,
        repository: ModelRepository,
        graphs: GraphService,
    ) -> None:
        self.graphs = graphs
        self.store = store
        self.supervisor = supervisor
        self.places = places
        self.storage = storage
        self.repository = repository

    async def create(self, spec: WatchSpec) -> answers.WatchView:
        """The model or graph (and version, if named) must exist; locations are checked as a job's are."""
        await resolve_target(
            self.repository, self.graphs, spec.model, spec.graph, spec.version, spec.prediction
        )
        try:
            source = self.storage.location(spec.input)
            output = self.storage.location(spec.output_location)
        except LocationError as exc:
            raise InvalidLocation(str(exc)) from None
        inside = PurePosixPath(source.path).is_relative_to(output.path) and source.path != output.path
        if source.protocol == output.protocol and inside:
            raise InvalidLocation(
                f"{spec.input!r} is inside {spec.output_location!r}: outputs would come back as inputs"
            )
        await self.store.create(spec)
        try:  # files may be dropped in as soon as the watch exists
            await self.places.make_folder(spec)
        except OSError as exc:
            await self.store.delete(spec.name)
            raise InvalidLocation(f"cannot make the folder {spec.input!r}: {exc}") from None
        self.supervisor.wake(spec.name)
        return await self.summary(spec.name)

    async def view(self, name: str, state: FileState | None, limit: int) -> answers.WatchDetail:
        """The watch and its files, newest first."""
        shown = await self.summary(name)
        files = await self.store.files(name, state, limit)
        return answers.WatchDetail(**dict(shown), files=[_file(f) for f in files])

    async def summary(self, name: str) -> answers.WatchView:
        watch = await self.store.watch(name)
        if watch is None:
            raise WatchNotFound(f"no watch {name!r}")
        return self._render(watch, await self.store.counts())

    async def listing(self) -> answers.WatchList:
        watches = await self.store.watches()
        counts = await self.store.counts()
        return answers.WatchList(watches=[self._render(w, counts) for w in watches])

    async def pause(self, name: str, paused: bool) -> answers.WatchView:
        """Paused: no listing, no new job; jobs under way finish and their files are settled."""
        if not await self.store.set_paused(name, paused):
            raise WatchNotFound(f"no watch {name!r}")
        if not paused:
            self.supervisor.wake(name)
        return await self.summary(name)

    async def delete(self, name: str) -> answers.WatchView:
        """Stops watching; outputs stay, and jobs under way run to their end."""
        shown = await self.summary(name)
        if not await self.store.delete(name):
            raise WatchNotFound(f"no watch {name!r}")
        return shown

    def _render(self, watch: Watch, counts: dict[str, dict[str, int]]) -> answers.WatchView:
        spec = watch.spec
        return answers.WatchView(
            **spec.model_dump(),
            paused=watch.paused,
            detection=self.supervisor.detection(spec),
            error=watch.error,
            counts=answers.FileCounts(**counts.get(spec.name, dict.fromkeys(FILE_STATES, 0))),
            created=iso_time(watch.created),
        )


def _file(file: WatchedFile) -> answers.WatchedFile:
    return answers.WatchedFile(
        name=file.name, size=file.size, state=file.state, version=file.version, job=file.job_id,
        attempts=file.attempts, output_location=file.output_location, rows=file.rows, error=file.error,
        seen=iso_time(file.seen), updated=iso_time(file.updated),
    )  # fmt: skip
