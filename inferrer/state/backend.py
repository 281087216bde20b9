"""What the model repository stands on: a backend that keeps the index and the artifacts, and makes
each write atomic under one lock across every gateway process. Two: a folder (the embedded default,
folder_backend.py) and an SQL index with artifacts in a bucket or folder (shared_backend.py).

The repository (repository.py) holds the rules: names, version numbers, conflicts, retention. It
reads the index a backend gives it, and asks the backend for each step of a write."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from inferrer.state.pins import Pin

Versions = Mapping[str, Mapping[str, Manifest]]  # model -> version -> manifest


@dataclass(frozen=True)
class Index:
    """One read of the repository: never changed, only replaced whole, so a reader that holds it
    sees one state throughout. `stamp` tells one write from the next; `places` is where the
    backend keeps each version's files, when it does not follow from the manifest."""

    versions: Versions = field(default_factory=dict)
    active: Mapping[str, str] = field(default_factory=dict)
    stamp: object = None
    places: Mapping[tuple[str, str], Staged] = field(default_factory=dict)

    def manifests(self) -> Iterator[Manifest]:
        for stored in self.versions.values():
            yield from stored.values()


@dataclass(frozen=True)
class Staged:
    """A version's files, written but not yet in the index: the artifact, and the verified ONNX
    graph compiled from it where there is one. Each is a path or URL only its backend reads."""

    artifact: str
    graph: str | None = None


@dataclass(frozen=True)
class OpenArtifact:
    handle: BinaryIO
    size: int


class RepositoryBackend(Protocol):
    def current(self) -> Index:
        """The index as this process knows it now: cheap enough for every request."""

    def locked(self) -> AbstractContextManager[Index]:
        """Excludes every other writer, in every process of every gateway, until it exits; the
        index it yields is fresh. The steps below run inside it, but `stage` and `settle`."""

    def stage(self, fmt: ArtifactFormat, data: bytes, graph: bytes | None) -> Staged:
        """Write a version's files where no reader looks yet (outside the lock: uploads are slow)."""

    def discard(self, staged: Staged) -> None:
        """Remove staged files that will not be published."""

    def publish(self, staged: Staged, manifest: Manifest) -> None:
        """The staged version appears in the index, whole."""

    def write_active(self, name: str, version: str) -> None: ...

    def remove_version(self, manifest: Manifest) -> None:
        """Out of the index now; its files once the lock is released."""

    def remove_model(self, name: str) -> None:
        """Every version, the active pointer and the pins of a model, as `remove_version`."""

    def pin(self, name: str, version: str, pin: Pin) -> None: ...

    def unpin(self, name: str, version: str, holder: str) -> None: ...

    def pinned(self, name: str) -> set[str]:
        """The versions of `name` with a pin that has not lapsed (lapsed ones are removed)."""

    def holders(self, name: str) -> set[str]:
        """Who holds a pin on any version of `name` that has not lapsed."""

    def commit(self, versions: Versions, active: Mapping[str, str]) -> Index:
        """Record a write: the index becomes (versions, active) with a new stamp, here at once and
        for every other process at its next look."""

    def settle(self) -> None:
        """After a write, outside the lock: return once every other gateway process reads it (or
        can no longer answer from what it read before)."""

    def open_artifact(self, index: Index, manifest: Manifest, graph: bool) -> OpenArtifact:
        """A version's artifact (or its graph), open; FileNotFoundError when it is gone."""

    def close(self) -> None: ...
