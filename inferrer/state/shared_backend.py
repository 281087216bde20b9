"""The repository several gateways share: the index in SQL (shared_schema.py), each version's files
at its own location under one `s3://` prefix (or a folder in the data directory).

The hot path never waits on the database or the bucket. Each gateway process reads the generation
row every `poll_s` on a thread of its own, reads the whole index again when it changed, and records
which generation it holds (a heartbeat). A write takes the database's lock (the generation row),
changes the index and bumps the generation in one transaction, then waits until every other live
reader holds it: once a delete has answered, no gateway answers from the version it removed.

A reader that cannot read the database for `lease_s / 2` answers 503 rather than from an index that
may be stale; writers stop waiting for a reader whose heartbeat is older than `lease_s`. So a
gateway cut off from the database is never waited for, and never serves what was deleted meanwhile,
as long as the hosts' clocks agree within `lease_s / 2` (NTP keeps them within milliseconds).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from datafiles.locations import Storage
from inferrer.errors import RepositoryUnreachable
from inferrer.state.backend import Index, OpenArtifact, Staged, Versions
from inferrer.state.pins import Pin
from inferrer.state.shared_readers import Readers
from inferrer.state.shared_schema import (
    GENERATION_ROW,
    active_versions,
    model_versions,
    read_index,
    repository_generation,
    version_pins,
)
from inferrer.state.sql_engine import WRITE

logger = logging.getLogger(__name__)

_GENERATION = repository_generation.c.id == GENERATION_ROW
_READ_GENERATION = sa.select(repository_generation.c.value).where(_GENERATION)
# The write lock: an update of the generation row holds the row's lock until the transaction ends.
_TAKE_LOCK = sa.update(repository_generation).where(_GENERATION).values(value=repository_generation.c.value)


class SharedBackend:
    def __init__(self, engine: Engine, storage: Storage, artifacts_url: str, poll_s: float, lease_s: float):
        self._engine = engine
        self._writes = engine.execution_options(**{WRITE: True})
        self._storage = storage
        self._base = artifacts_url.rstrip("/")
        storage.location(self._base)  # a malformed location is refused at start
        self._poll_s, self._lease_s = poll_s, lease_s
        self._readers = Readers(engine, poll_s, lease_s)
        self._latest = Index(stamp=0)
        self._install_lock = threading.Lock()
        self._last_read = time.monotonic()
        self._pending: _Write | None = None  # the write under way in this process, inside the lock
        self._doomed: list[Staged] = []  # removed by the last write: deleted once every reader has it
        try:
            self._poll()  # a database out of reach at start fails the start
        except BaseException:
            engine.dispose()
            raise
        self._stop = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="repository-follower", daemon=True)
        self._follower.start()

    # Reading ---------------------------------------------------------------------------------

    def current(self) -> Index:
        if time.monotonic() - self._last_read > self._lease_s / 2:
            raise RepositoryUnreachable(
                f"this gateway has not read the shared model repository for over {self._lease_s / 2:g} s; "
                "it answers again once it can"
            )
        return self._latest

    def open_artifact(self, index: Index, manifest: Manifest, graph: bool) -> OpenArtifact:
        place = index.places.get(manifest.key)
        url = None if place is None else place.graph if graph else place.artifact
        if url is None:
            raise FileNotFoundError(f"{manifest.name}/{manifest.version}")
        location = self._storage.location(url)
        size = manifest.served_size if graph else manifest.size
        return OpenArtifact(self._storage.open_read(location), size)

    # Writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[Index]:
        try:
            with self._writes.connect() as connection, connection.begin():
                connection.execute(_TAKE_LOCK)
                value = connection.execute(_READ_GENERATION).scalar_one()
                fresh = self._latest if value == self._latest.stamp else read_index(connection, value)
                self._pending = _Write(connection, dict(fresh.places), value)
                try:
                    yield fresh
                    done = self._pending
                finally:
                    self._pending = None
        except sa.exc.OperationalError as exc:  # the database out of reach, a session ended
            raise RepositoryUnreachable(f"the shared model repository cannot be written now: {exc}") from None
        # Committed: what the write made is the index here at once; what it removed goes once
        # every other reader has it (`settle`): until then one may still send a node for it.
        if done.index is not None:
            self._install(done.index)
        self._doomed += done.doomed

    def stage(self, fmt: ArtifactFormat, data: bytes, graph: bytes | None) -> Staged:
        folder = f"{self._base}/{uuid.uuid4().hex}"
        staged = Staged(
            f"{folder}/artifact.{fmt.value}", f"{folder}/graph.onnx" if graph is not None else None
        )
        try:
            self._storage.write_atomic(self._storage.location(staged.artifact), data)
            if staged.graph is not None and graph is not None:
                self._storage.write_atomic(self._storage.location(staged.graph), graph)
        except BaseException:
            self.discard(staged)
            raise
        return staged

    def discard(self, staged: Staged) -> None:
        for url in (staged.artifact, staged.graph):
            if url is not None:
                try:
                    self._storage.remove(self._storage.location(url))
                except Exception as exc:  # left in the bucket; the index never names it
                    logger.warning("could not remove %s: %s", url, exc)

    def publish(self, staged: Staged, manifest: Manifest) -> None:
        write = self._write()
        write.connection.execute(
            model_versions.insert().values(
                name=manifest.name,
                version=manifest.version,
                manifest=manifest.model_dump_json(),
                artifact=staged.artifact,
                graph=staged.graph,
            )
        )
        write.places[manifest.key] = staged

    def write_active(self, name: str, version: str) -> None:
        connection = self._write().connection
        connection.execute(sa.delete(active_versions).where(active_versions.c.name == name))
        connection.execute(active_versions.insert().values(name=name, version=version))

    def remove_version(self, manifest: Manifest) -> None:
        write = self._write()
        write.connection.execute(
            sa.delete(model_versions).where(
                model_versions.c.name == manifest.name, model_versions.c.version == manifest.version
            )
        )
        if (staged := write.places.pop(manifest.key, None)) is not None:
            write.doomed.append(staged)

    def remove_model(self, name: str) -> None:
        write = self._write()
        for table in (model_versions, active_versions, version_pins):
            write.connection.execute(sa.delete(table).where(table.c.name == name))
        for key in [key for key in write.places if key[0] == name]:
            write.doomed.append(write.places.pop(key))

    def pin(self, name: str, version: str, pin: Pin) -> None:
        connection = self._write().connection
        self.unpin(name, version, pin.holder)
        lapses_at = None if pin.lease_s is None else time.time() + pin.lease_s
        connection.execute(
            version_pins.insert().values(name=name, version=version, holder=pin.holder, lapses_at=lapses_at)
        )

    def unpin(self, name: str, version: str, holder: str) -> None:
        self._write().connection.execute(
            sa.delete(version_pins).where(
                version_pins.c.name == name,
                version_pins.c.version == version,
                version_pins.c.holder == holder,
            )
        )

    def pinned(self, name: str) -> set[str]:
        connection = self._write().connection
        now = time.time()
        lapsed = sa.and_(version_pins.c.name == name, version_pins.c.lapses_at < now)
        connection.execute(sa.delete(version_pins).where(lapsed))
        rows = connection.execute(sa.select(version_pins.c.version).where(version_pins.c.name == name))
        return {version for (version,) in rows}

    def holders(self, name: str) -> set[str]:
        self.pinned(name)  # lapsed pins removed first
        rows = self._write().connection.execute(
            sa.select(version_pins.c.holder).where(version_pins.c.name == name)
        )
        return {holder for (holder,) in rows}

    def commit(self, versions: Versions, active: Mapping[str, str]) -> Index:
        write = self._write()
        write.connection.execute(
            sa.update(repository_generation).where(_GENERATION).values(value=write.value + 1)
        )
        self._readers.forget_gone(write.connection)
        write.index = Index(versions, active, write.value + 1, dict(write.places))
        return write.index

    def settle(self) -> None:
        """Best effort: the write is committed whatever happens here."""
        try:
            self._readers.wait_until_all_hold(self._latest.stamp)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("could not check that every gateway read the last write: %s", exc)
        doomed, self._doomed = self._doomed, []
        for staged in doomed:
            self.discard(staged)

    def close(self) -> None:
        self._stop.set()
        self._follower.join(timeout=10)
        self._readers.leave()
        self._engine.dispose()

    # Following other writers -------------------------------------------------------------------

    def _follow(self) -> None:
        failing = False
        while not self._stop.wait(self._poll_s):
            try:
                self._poll()
                failing = False
            except Exception as exc:  # never ends the thread: this process would answer 503 for good
                if not failing:
                    logger.warning("cannot read the shared model repository: %s", exc)
                failing = True

    def _poll(self) -> None:
        """Read the generation; when it changed, the whole index, installed before the heartbeat
        says this process holds it (a writer that saw the heartbeat may send a client here)."""
        started, now = time.monotonic(), time.time()
        with self._engine.connect() as connection, connection.begin():
            value = connection.execute(_READ_GENERATION).scalar_one()
            if value != self._latest.stamp:
                index = read_index(connection, value)
                # Each statement sees the latest commit (PostgreSQL's READ COMMITTED): a write
                # between them would mix two states under one stamp. Then take it at the next look.
                if connection.execute(_READ_GENERATION).scalar_one() != value:
                    return
                self._install(index)
        self._readers.beat(value, now)
        self._last_read = started

    def _install(self, index: Index) -> None:
        with self._install_lock:
            if int(index.stamp) > int(self._latest.stamp):  # type: ignore[call-overload]
                self._latest = index

    def _write(self) -> _Write:
        if self._pending is None:
            raise RuntimeError("a repository write step outside its lock")
        return self._pending


class _Write:
    """A write under way: its transaction, the places it changes, and the files it removes once
    committed."""

    def __init__(self, connection: Connection, places: dict[tuple[str, str], Staged], value: int) -> None:
        self.connection = connection
        self.places = places
        self.value = value
        self.doomed: list[Staged] = []
        self.index: Index | None = None
