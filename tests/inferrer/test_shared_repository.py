"""The shared repository's promises beyond the rules every backend keeps: reads never touch the
database, a write answers once every live gateway process holds it, and a process cut off from the
database answers nothing from what it read before (SQLite here, on one machine; the same code runs on
PostgreSQL in tests/inferrer/test_repository.py and across hosts in tests/multihost)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from artifacts.formats import ArtifactFormat
from artifacts.schema import ModelSchema
from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import wait_until
from inferrer.errors import ModelNotFound, RepositoryUnreachable
from inferrer.state.repository import ModelRepository
from inferrer.state.shared_backend import SharedBackend
from inferrer.state.shared_readers import Readers
from inferrer.state.shared_schema import open_index_engine

SIGNATURE = ModelSchema(n_features=2, outputs=["predict"])
POLL_S, LEASE_S = 0.05, 2.0


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[ModelRepository]]:
    """Two gateway processes' repositories on one SQLite index and one artifacts folder."""
    opened = [
        ModelRepository(
            SharedBackend(
                open_index_engine(f"sqlite:///{tmp_path / 'index.db'}"),
                Storage(tmp_path, S3Settings()),
                "models",
                POLL_S,
                LEASE_S,
            )
        )
        for _ in range(2)
    ]
    yield opened
    for repository in opened:
        repository.close()


def _deploy(repository: ModelRepository, name: str, data: bytes) -> str:
    manifest = repository.store(name, None, data, ArtifactFormat.SKOPS, SIGNATURE)
    return repository.activate(name, manifest.version).version


def _engine(repository: ModelRepository) -> sa.engine.Engine:
    backend = repository._backend
    assert isinstance(backend, SharedBackend)
    return backend._engine


def test_reads_never_touch_the_database(gateways: list[ModelRepository]) -> None:
    """What a prediction reads (the active version, the stored set, the generation) comes from
    memory: no SQL statement runs on the reading thread, however many reads."""
    writer, reader = gateways
    _deploy(writer, "m", b"one")
    on_this_thread: list[str] = []
    me = threading.get_ident()

    def count(*args: Any) -> None:
        if threading.get_ident() == me:
            on_this_thread.append(str(args[2]))

    sa.event.listen(_engine(reader), "before_cursor_execute", count)
    for _ in range(2000):
        assert reader.get("m").version == "1"
        reader.stored()
        reader.generation()
    sa.event.remove(_engine(reader), "before_cursor_execute", count)
    assert on_this_thread == []


def test_a_delete_answers_only_once_the_other_gateway_holds_it(gateways: list[ModelRepository]) -> None:
    """Checked at once after each write, with no wait: the other process already has it."""
    first, second = gateways
    for round_ in range(20):
        _deploy(first, "m", f"v{round_}".encode())
        assert second.get("m").sha256 == first.get("m").sha256
        first.delete("m")
        with pytest.raises(ModelNotFound):
            second.get("m")


def test_a_silent_gateway_is_waited_for_at_most_one_lease_and_then_answers_503(
    gateways: list[ModelRepository],
) -> None:
    """A gateway process that stops reading the database (cut off: here its follower thread is
    stopped, the one fault injected) holds up a write for at most a lease, and from half a lease
    after its last read it refuses to answer from its stale index."""
    writer, silent = gateways
    _deploy(writer, "m", b"one")
    backend = silent._backend
    assert isinstance(backend, SharedBackend)
    backend._stop.set()
    backend._follower.join()
    silenced = time.monotonic()

    started = time.monotonic()
    writer.delete("m")
    waited = time.monotonic() - started
    print(f"\nthe delete waited {waited:.2f} s for a silent gateway (lease {LEASE_S} s)")
    assert waited <= LEASE_S + 1.0
    assert time.monotonic() - silenced > LEASE_S / 2  # so the silent one fences itself by now
    with pytest.raises(RepositoryUnreachable):
        silent.get("m")

    started = time.monotonic()
    _deploy(writer, "n", b"two")  # its heartbeat is a lease old now: no write waits for it again
    assert time.monotonic() - started < LEASE_S / 2


def test_a_write_that_commits_keeps_its_files_whatever_fails_after(
    gateways: list[ModelRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check that every gateway read a write runs after its commit; the database failing there
    (injected: a connection lost at that moment is not something SQLite can be made to do) must
    neither fail the write nor remove the files of the version it committed."""
    writer, reader = gateways

    def lost(*_: object) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("connection lost"))

    monkeypatch.setattr(Readers, "wait_until_all_hold", lost)
    manifest = writer.store("m", None, b"kept", ArtifactFormat.SKOPS, SIGNATURE)
    artifact = writer.open_artifact(manifest.sha256)
    assert artifact is not None
    with artifact.handle:
        assert artifact.handle.read() == b"kept"
    monkeypatch.undo()
    assert wait_until(lambda: "m" in reader.names(), 5)
