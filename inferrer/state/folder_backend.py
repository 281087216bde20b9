"""The embedded default: the repository in one folder (layout.py), its writes under a file lock, a
generation file that every reader checks with one stat (generation.py), and pins as files (pins.py).
Every gateway process on this machine shares it; none on another machine can."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from inferrer.state.backend import Index, OpenArtifact, Staged, Versions
from inferrer.state.generation import Generation, Stamp
from inferrer.state.layout import RepositoryLayout
from inferrer.state.pins import Pin, VersionPins


class FolderBackend:
    def __init__(self, root: Path) -> None:
        self._layout = RepositoryLayout(root)
        self._pins = VersionPins(root / "pins")
        self._generation = Generation(root / "generation")
        self._lock_file = root / "lock"
        self._index = Index()
        self._doomed: list[Path] = []  # moved aside under the lock, removed after it
        with self.locked():
            self._layout.remove_crash_litter()
            if not self._generation.exists():
                self._generation.bump()

    def current(self) -> Index:
        self._generation.catch_up(self._rescan)
        return self._index

    @contextlib.contextmanager
    def locked(self) -> Iterator[Index]:
        """Across processes, by a file lock; the repository excludes its own threads."""
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self.current()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        doomed, self._doomed = self._doomed, []
        for path in doomed:
            self._layout.discard(path)

    def stage(self, fmt: ArtifactFormat, data: bytes, graph: bytes | None) -> Staged:
        with self._lock_file.open("a") as handle:  # held only while the staging folder is claimed
            fcntl.flock(handle, fcntl.LOCK_EX)
            staged = self._layout.claim_staging()
        return Staged(str(self._layout.stage(staged, fmt, data, graph)))

    def discard(self, staged: Staged) -> None:
        self._layout.discard(Path(staged.artifact))

    def publish(self, staged: Staged, manifest: Manifest) -> None:
        self._layout.publish(Path(staged.artifact), manifest)

    def write_active(self, name: str, version: str) -> None:
        self._layout.write_active(name, version)

    def remove_version(self, manifest: Manifest) -> None:
        self._layout.remove_version(manifest.name, manifest.version)

    def remove_model(self, name: str) -> None:
        self._doomed.append(self._layout.move_model_aside(name))
        self._pins.forget(name)

    def pin(self, name: str, version: str, pin: Pin) -> None:
        self._pins.pin(name, version, pin)

    def unpin(self, name: str, version: str, holder: str) -> None:
        self._pins.unpin(name, version, holder)

    def pinned(self, name: str) -> set[str]:
        return self._pins.pinned(name)

    def holders(self, name: str) -> set[str]:
        return self._pins.holders(name)

    def commit(self, versions: Versions, active: Mapping[str, str]) -> Index:
        self._index = Index(versions, active, self._generation.bump())
        return self._index

    def settle(self) -> None:
        """Every process on this machine checks the generation file before each read."""

    def open_artifact(self, index: Index, manifest: Manifest, graph: bool) -> OpenArtifact:
        path = self._layout.graph_file(manifest) if graph else self._layout.artifact_file(manifest)
        handle = path.open("rb")
        return OpenArtifact(handle, os.fstat(handle.fileno()).st_size)

    def close(self) -> None:
        pass

    def _rescan(self, stamp: Stamp) -> None:
        """Build the new index aside, then swap it in: a reader in another thread sees the old
        index or the new one, never one half built."""
        versions, active = self._layout.scan()
        self._index = Index(versions, active, stamp)
