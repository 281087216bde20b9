"""Inference graphs as the routes use them: check a document (every problem at once), deploy it as a
new version pinned to the model versions it was checked against, and serve the active versions from
memory: every gateway process reads which versions are active every poll interval, never per request.

A graph holds a pin on each model version it calls (the repository's "user" pins), so that neither
retention nor a delete takes a model from under it: deleting the model answers 409 naming the graph."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from artifacts.manifest import Manifest
from inferrer.errors import GraphInvalid, GraphNotFound, VersionConflict
from inferrer.graphs.deployed import BrokenGraph, DeployedGraph, GraphRecord, ready_to_run
from inferrer.graphs.execution import GraphAnswer, GraphRunner
from inferrer.graphs.reading import read_graph
from inferrer.graphs.store import GraphStore
from inferrer.graphs.traversal import every_stage, pinned_versions
from inferrer.graphs.validation import check_graph
from inferrer.state.pins import user_pin
from inferrer.state.repository import ModelRepository
from wire.graph_answers import GraphPlan

logger = logging.getLogger(__name__)


class GraphService:
    def __init__(
        self, store: GraphStore, repository: ModelRepository, runner: GraphRunner, poll_s: float
    ) -> None:
        self._store = store
        self._repository = repository
        self._runner = runner
        self._poll_s = poll_s
        self._records: dict[str, GraphRecord] = {}  # graph -> its active version's record
        self._ready: dict[str, DeployedGraph | BrokenGraph] = {}
        # (graph, version) -> when it was read, and what: for predictions that name a version
        self._others: dict[tuple[str, str], tuple[float, DeployedGraph | BrokenGraph]] = {}
        self._generation: object = None
        self._read_started = -1.0  # when the last read of the store that completed began
        self._reading = asyncio.Lock()  # one read at a time: misses meanwhile share the next
        self._changed_here: dict[str, float] = {}  # graph -> when this process last changed it

    # --- checking and deploying

    def check(self, document: Any) -> GraphPlan:
        """The plan of a valid document, or GraphInvalid listing every problem with its path."""
        spec, problems = read_graph(document)
        checked = check_graph(spec, self._repository) if spec is not None else None
        problems += checked.problems if checked is not None else []
        if problems or checked is None or checked.plan is None:
            listed = [(p.path, p.message) for p in problems]
            raise GraphInvalid(
                f"the graph has {len(listed)} problem(s): {listed[0][0]}: {listed[0][1]} ...", listed
            )
        return checked.plan

    async def deploy(self, document: dict[str, Any]) -> GraphPlan:
        plan = await asyncio.to_thread(self.check, document)
        name = plan.graph
        held = sorted(
            {(call.model, call.version) for stage in every_stage(plan.stages) for call in stage.calls}
        )
        # Pinned first, each under the repository's lock (a model delete cannot slip between), by a
        # holder of this deploy's own: a delete of the graph meanwhile releases only what it deleted.
        pin = user_pin("graph", name, uuid.uuid4().hex[:8])
        try:
            for model, version in held:
                await asyncio.to_thread(self._repository.pin, model, version, pin)
            pins = pinned_versions(plan)
            record = await asyncio.to_thread(self._store.add, name, document, pins, held, pin.holder)
        except BaseException:
            await self._release(name, held, pin.holder)
            raise
        self._changed(name)
        self._install(record)
        return plan.model_copy(update={"version": record.version})

    async def activate(self, name: str, version: str) -> GraphPlan:
        """Serve `version` from now on, once it checks against the models as deployed now."""
        _runnable(await self._version(name, version))  # 409 before anything changes
        if not await asyncio.to_thread(self._store.activate, name, version):
            raise GraphNotFound(f"graph {name!r} has no version {version!r}")
        await self.refresh(newer_than=time.monotonic())
        return self._active(name).plan

    async def delete(self, name: str) -> list[str]:
        deleted = await asyncio.to_thread(self._store.delete, name)
        if not deleted:
            raise GraphNotFound(f"graph {name!r} not found")
        for gone in deleted:
            await self._release(name, gone.held, gone.holder)
        self._changed(name)
        self._records.pop(name, None)
        self._ready.pop(name, None)
        self._runner.forget(name)
        self._others = {key: found for key, found in self._others.items() if key[0] != name}
        return [gone.version for gone in deleted]

    async def _release(self, name: str, held: Sequence[tuple[str, str]], holder: str) -> None:
        for model, version in held:
            await asyncio.to_thread(self._repository.unpin, model, version, holder)

    # --- reading

    async def versions(self, name: str) -> list[GraphRecord]:
        records = await asyncio.to_thread(self._store.versions, name)
        if not records:
            raise GraphNotFound(f"graph {name!r} not found")
        return records

    def names(self) -> list[str]:
        return sorted(self._records)

    async def deployed(self, name: str, version: str | None = None) -> DeployedGraph:
        """The graph version a request runs (the active one without `version`)."""
        self._follow_repository()
        if version is None:
            if name not in self._ready:  # deployed through another gateway since the last read?
                await self.refresh(newer_than=time.monotonic())
            return self._active(name)
        return _runnable(await self._version(name, version))

    async def _version(self, name: str, version: str) -> DeployedGraph | BrokenGraph:
        """One version, read from the store at most once per poll interval (a version deleted
        through another gateway process is refused within that interval; through this one, at once)."""
        key, now = (name, version), time.monotonic()
        if key not in self._others or now - self._others[key][0] > self._poll_s:
            found = [r for r in await self.versions(name) if r.version == version]
            if not found:
                raise GraphNotFound(f"graph {name!r} has no version {version!r}")
            self._others[key] = (now, ready_to_run(found[0], self._repository))
        return self._others[key][1]

    def request_reader(self, graph: DeployedGraph) -> Manifest | None:
        """The version of the graph's request reader (DeployedGraph.reader) that runs now."""
        call = graph.reader
        return (
            None if call is None else self._repository.get(call.model, None if call.follow else call.version)
        )

    async def predict(self, graph: DeployedGraph, rows: np.ndarray) -> GraphAnswer:
        return await self._runner.run(graph, rows)

    def _active(self, name: str) -> DeployedGraph:
        found = self._ready.get(name)
        if found is None:
            raise GraphNotFound(f"graph {name!r} not found")
        return _runnable(found)

    # --- following the store and the repository

    async def refresh(self, newer_than: float | None = None) -> None:
        """Read which versions are active; `newer_than`: unless a read that began since then has
        completed meanwhile (the misses of many requests at once share one read)."""
        async with self._reading:
            if newer_than is not None and self._read_started >= newer_than:
                return
            started = time.monotonic()
            records = await asyncio.to_thread(self._store.active)
            self._read_started = started
            self._apply(records, started)

    def _apply(self, records: list[GraphRecord], started: float) -> None:
        """What a read found, except for graphs this process changed after the read began."""
        fresh = {r.name: r for r in records}
        for name in set(self._records) | set(fresh):
            if self._changed_here.get(name, -1.0) > started:
                continue
            if name not in fresh:
                self._records.pop(name, None)
                self._ready.pop(name, None)
                self._runner.forget(name)
            elif self._records.get(name) != fresh[name]:
                self._install(fresh[name])

    async def run_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # one failed read must not end the polling
                logger.exception("reading the active graph versions failed; trying again")
            await asyncio.sleep(self._poll_s)

    def _changed(self, name: str) -> None:
        self._changed_here[name] = time.monotonic()

    def _install(self, record: GraphRecord) -> None:
        self._records[record.name] = record
        self._ready[record.name] = ready_to_run(record, self._repository)

    def _follow_repository(self) -> None:
        """A model deployed or removed: graphs that follow active versions are checked again."""
        generation = self._repository.generation()
        if generation != self._generation:
            self._generation = generation
            self._ready = {name: ready_to_run(r, self._repository) for name, r in self._records.items()}
            self._others.clear()


def _runnable(found: DeployedGraph | BrokenGraph) -> DeployedGraph:
    if isinstance(found, BrokenGraph):
        record = found.record
        raise VersionConflict(
            f"graph {record.name!r} version {record.version!r} no longer checks against the deployed "
            f"models (deploy it again): {'; '.join(found.problems)}"
        )
    return found
