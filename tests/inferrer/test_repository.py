"""The repository's rules on every backend (tests/inferrer/conftest.py), and what the folder backend
adds: paths that stay inside its root, and nothing left by a write cut short."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from artifacts.schema import ModelSchema
from inferrer.errors import InvalidInput, ModelNotFound, VersionConflict
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.repository import ModelRepository, check_name
from tests.inferrer.conftest import OpenRepository

SIGNATURE = ModelSchema(n_features=2, outputs=["predict"])

TRAVERSALS = ["..", "../etc", "a/../b", "/etc/passwd", "model/", "model/sub", "", "   ", "."]
LOOK_ALIKES = ["model123", "model.version1", "..my_model", "model..1"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_traversal_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(name)


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_accepted_and_stay_inside_the_root(tmp_path: Path, name: str) -> None:
    repository = ModelRepository(FolderBackend(tmp_path))
    manifest = repository.store(name, None, b"bytes", ArtifactFormat.SKOPS, SIGNATURE)
    artifact = repository.open_artifact(manifest.sha256)
    assert artifact is not None
    with artifact.handle:
        assert Path(artifact.handle.name).resolve().is_relative_to((tmp_path / "models").resolve())


def _deploy(repository: ModelRepository, name: str, version: str | None, data: bytes) -> Manifest:
    manifest = repository.store(name, version, data, ArtifactFormat.SKOPS, SIGNATURE)
    return repository.activate(name, manifest.version)


def test_a_stored_version_serves_only_once_activated(open_repository: OpenRepository) -> None:
    repository = open_repository()
    first = _deploy(repository, "m", None, b"one")
    second = repository.store("m", None, b"two", ArtifactFormat.SKOPS, SIGNATURE)
    assert repository.get("m") == first
    assert repository.get("m", "2") == second  # pinned requests may use it already
    repository.activate("m", "2")
    assert repository.get("m") == second
    assert repository.previous_version("m") == first
    repository.activate("m", "1")  # roll back
    assert repository.get("m") == first
    with pytest.raises(ModelNotFound):
        repository.activate("m", "9")


def test_versions_activate_and_survive_a_restart(open_repository: OpenRepository) -> None:
    repository = open_repository()
    first = _deploy(repository, "m", None, b"one")
    second = _deploy(repository, "m", None, b"two")
    named = _deploy(repository, "m", "blue", b"three")
    assert (first.version, second.version) == ("1", "2")
    assert repository.get("m").version == "blue"

    reopened = open_repository()
    assert reopened.get("m") == named
    assert [m.version for m in reopened.versions("m")] == ["1", "2", "blue"]
    assert [m.key for m in reopened.active()] == [("m", "blue")]
    artifact = reopened.open_artifact(first.sha256)
    assert artifact is not None and artifact.size == 3
    with artifact.handle:
        assert artifact.handle.read() == b"one"


def test_an_existing_version_is_a_conflict_and_changes_nothing(open_repository: OpenRepository) -> None:
    repository = open_repository()
    _deploy(repository, "m", "1", b"one")
    with pytest.raises(VersionConflict):
        repository.store("m", "1", b"other", ArtifactFormat.SKOPS, SIGNATURE)
    assert repository.get("m").size == 3


def test_a_failed_write_leaves_no_half_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repository = ModelRepository(FolderBackend(tmp_path))

    def broken_rename(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("inferrer.state.layout.os.rename", broken_rename)
    with pytest.raises(OSError):
        repository.store("m", None, b"one", ArtifactFormat.SKOPS, SIGNATURE)
    monkeypatch.undo()
    assert repository.names() == []
    assert list((tmp_path / "staging").iterdir()) == []
    assert ModelRepository(FolderBackend(tmp_path)).names() == []


def test_delete_removes_every_version(open_repository: OpenRepository) -> None:
    repository = open_repository()
    _deploy(repository, "m", None, b"one")
    _deploy(repository, "m", None, b"two")
    assert repository.delete("m") == ["1", "2"]
    with pytest.raises(ModelNotFound):
        repository.get("m")
    assert open_repository().names() == []
    with pytest.raises(ModelNotFound):
        repository.delete("m")


def test_two_processes_see_each_others_writes(open_repository: OpenRepository) -> None:
    """Gateway workers share one repository directory: each sees what another wrote."""
    first, second = open_repository(), open_repository()
    _deploy(first, "m", None, b"one")
    assert second.get("m").version == "1"
    assert second.store("m", None, b"two", ArtifactFormat.SKOPS, SIGNATURE).version == "2"
    first.activate("m", "2")
    assert second.get("m").version == "2"
    second.delete("m")
    assert first.names() == []


def test_every_version_is_listed_from_a_fresh_index_where_another_process_wrote(
    open_repository: OpenRepository,
) -> None:
    """The desired state's `keep` list: a version stored by another gateway process is in it (a
    node deletes the cached artifact of any version left out)."""
    first, second = open_repository(), open_repository()
    _deploy(second, "old", None, b"one")
    assert [m.name for m in first.all_versions()] == ["old"]
    _deploy(second, "new", None, b"two")
    assert [(m.name, m.version) for m in first.all_versions()] == [("new", "1"), ("old", "1")]


_WRITER = """
import sys
import threading
from pathlib import Path
from artifacts.formats import ArtifactFormat
from artifacts.schema import ModelSchema
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.repository import ModelRepository

repository = ModelRepository(FolderBackend(Path(sys.argv[1])))
data = b"\\0" * (512 << 20)
repository.store("m", None, data, ArtifactFormat.SKOPS, ModelSchema(n_features=2, outputs=["predict"]))
"""


def test_a_write_killed_half_way_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    """SIGKILL of a process in the middle of storing a large version: on the next open, the versions
    and the active pointer are as before and staging/ is empty."""
    repository = ModelRepository(FolderBackend(tmp_path))
    before = _deploy(repository, "m", None, b"one")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 60
    while not any((tmp_path / "staging").iterdir()):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never staged anything"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert any((tmp_path / "staging").iterdir()), "the kill came too late to leave a half write"

    reopened = ModelRepository(FolderBackend(tmp_path))
    assert list((tmp_path / "staging").iterdir()) == []
    assert [m.version for m in reopened.versions("m")] == ["1"]
    assert reopened.get("m") == before


def test_a_delete_or_pointer_write_cut_short_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    """A delete renames the model into staging/ before removing it, and a pointer is written to a
    temp file first: what a kill between the two steps leaves is removed on the next open."""
    repository = ModelRepository(FolderBackend(tmp_path))
    kept = _deploy(repository, "kept", None, b"one")
    (tmp_path / "staging" / "deleted-0123").mkdir()
    (tmp_path / "staging" / "deleted-0123" / "artifact.skops").write_bytes(b"gone")
    (tmp_path / "models" / "kept" / ".ACTIVE.0123").write_text("9")
    (tmp_path / ".generation.0123").write_text("x")

    reopened = ModelRepository(FolderBackend(tmp_path))
    assert list((tmp_path / "staging").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "models" / "kept").iterdir()) == ["1", "ACTIVE"]
    assert not (tmp_path / ".generation.0123").exists()
    assert reopened.get("kept") == kept


def test_a_deploy_never_activates_over_a_newer_active_version(open_repository: OpenRepository) -> None:
    """Two deploys of one model at once: the one that stored first but finished loading last does
    not undo the other's activation; an explicit switch still may go back."""
    repository = open_repository()
    older = repository.store("m", None, b"one", ArtifactFormat.SKOPS, SIGNATURE)
    newer = repository.store("m", None, b"two", ArtifactFormat.SKOPS, SIGNATURE)
    assert repository.activate("m", newer.version, over_newer=False) == newer
    assert repository.activate("m", older.version, over_newer=False) == newer
    assert repository.get("m") == newer
    assert repository.activate("m", older.version) == older  # a rollback


def test_a_reader_never_fails_while_another_process_retires_and_deletes(tmp_path: Path) -> None:
    """Two repositories on one root, as two gateway processes: one deploys with retention and
    deletes, the other reads meanwhile without a lock. A version removed during its scan is left
    out (the writer's generation bump makes the next look scan again), never an error."""
    writer, reader = (
        ModelRepository(FolderBackend(tmp_path), keep_versions=1),
        ModelRepository(FolderBackend(tmp_path)),
    )
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                reader.get("churned")
                reader.all_versions()
            except ModelNotFound:
                pass  # deleted, or not there yet: what a reader may see
            except BaseException as exc:  # the bug: a half-seen removal raised
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for i in range(150):
            for ballast in range(3):  # more files to walk: a longer scan for the removal to meet
                _deploy(writer, f"other-{ballast}", None, f"{i}-{ballast}".encode())
            _deploy(writer, "churned", None, str(i).encode())
            if i % 10 == 9:
                writer.delete("churned")
            if errors:
                break
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert errors == [], repr(errors[0])


def test_an_opened_artifact_reads_whole_after_its_model_is_deleted(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path))
    manifest = _deploy(repository, "m", None, b"x" * 100_000)
    artifact = repository.open_artifact(manifest.sha256)
    assert artifact is not None
    repository.delete("m")
    with artifact.handle:
        assert artifact.handle.read() == b"x" * 100_000
    assert repository.open_artifact(manifest.sha256) is None
