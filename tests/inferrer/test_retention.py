"""Version retention in the repository: the newest N versions stay, and so do the active one and any
pinned one, whoever (which process) wrote last."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from artifacts.formats import ArtifactFormat
from artifacts.schema import ModelSchema
from inferrer.errors import ModelNotFound
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.pins import Pin
from inferrer.state.repository import ModelRepository

SIGNATURE = ModelSchema(n_features=2, outputs=["predict"])


def _store(repository: ModelRepository, name: str = "m", pin: Pin | None = None) -> str:
    data = f"artifact {time.monotonic_ns()}".encode()
    return repository.store(name, None, data, ArtifactFormat.SKOPS, SIGNATURE, pin=pin).version


def _versions(repository: ModelRepository, name: str = "m") -> list[str]:
    return [m.version for m in repository.versions_if_any(name)]


def _on_disk(root: Path, name: str = "m") -> list[str]:
    return sorted((p.name for p in (root / "models" / name).iterdir() if p.is_dir()), key=int)


def test_the_newest_versions_stay_and_older_ones_leave_disk(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=3)
    for _ in range(8):
        repository.activate("m", _store(repository))
    assert _versions(repository) == ["6", "7", "8"]
    assert _on_disk(tmp_path) == ["6", "7", "8"]
    assert list((tmp_path / "staging").iterdir()) == []  # nothing left behind
    assert repository.previous_version("m").version == "7"  # a rollback target remains
    other = ModelRepository(FolderBackend(tmp_path), keep_versions=3)  # another gateway process sees the same
    assert _versions(other) == ["6", "7", "8"]


def test_the_active_version_is_never_removed(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=2)
    repository.activate("m", _store(repository))
    for _ in range(4):
        _store(repository)  # staged, not activated
    assert _versions(repository) == ["1", "4", "5"]
    repository.activate("m", "5")  # version 1 is no longer protected
    assert _versions(repository) == ["4", "5"]


def test_a_pinned_version_stays_until_unpinned(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=1)
    repository.activate("m", _store(repository))
    _store(repository, pin=Pin("deploy-a"))  # version 2, pinned as it is stored
    repository.activate("m", _store(repository))
    assert _versions(repository) == ["2", "3"]
    ModelRepository(FolderBackend(tmp_path), keep_versions=1).unpin(
        "m", "2", "deploy-a"
    )  # from another process
    assert _versions(repository) == ["3"]  # retention applies as the pin goes


def test_a_lapsed_pin_protects_nothing(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=1)
    version = _store(repository)
    repository.pin("m", version, Pin("job-1", lease_s=0.05))
    repository.activate("m", _store(repository))
    assert _versions(repository) == ["1", "2"]
    time.sleep(0.1)
    repository.activate("m", "2")
    assert _versions(repository) == ["2"]
    assert not (tmp_path / "pins" / "m").exists()  # the lapsed pin's file is gone too


def test_pinning_what_is_not_stored_is_refused_and_pins_leave_with_their_model(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=1)
    with pytest.raises(ModelNotFound):
        repository.pin("m", "1", Pin("job-1"))
    repository.activate("m", _store(repository, pin=Pin("job-1")))
    repository.delete("m")
    assert not (tmp_path / "pins" / "m").exists()


def test_retention_is_per_model_and_zero_keeps_everything(tmp_path: Path) -> None:
    repository = ModelRepository(FolderBackend(tmp_path), keep_versions=2)
    for _ in range(3):
        repository.activate("a", _store(repository, "a"))
    repository.activate("b", _store(repository, "b"))
    assert _versions(repository, "a") == ["2", "3"]
    assert _versions(repository, "b") == ["1"]
    everything = ModelRepository(FolderBackend(tmp_path / "all"), keep_versions=0)
    for _ in range(12):
        everything.activate("m", _store(everything))
    assert len(_versions(everything)) == 12
