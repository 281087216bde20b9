"""The model repository: every stored version of every model, which one is active, and the rules
that change them (names, version numbers, conflicts, retention), under one write lock. Where the
files live and how each change is made atomic is layout.py.

Version retention: with keep_versions=N, a write that stores or activates a version removes the
versions of that model beyond the newest N, but never the active one or a pinned one (pins.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from artifacts.formats import ArtifactFormat, sha256_hex
from artifacts.manifest import Manifest, RuntimeChoice
from artifacts.names import is_path_segment
from artifacts.schema import ModelSchema
from inferrer.errors import InvalidInput, ModelNotFound, VersionConflict
from inferrer.state.generation import Generation
from inferrer.state.layout import RepositoryLayout
from inferrer.state.pins import Pin, VersionPins

logger = logging.getLogger(__name__)


def check_name(value: str, what: str = "model name") -> str:
    """Allow-listed characters only, and never '.' or '..': a name is one path segment."""
    if not is_path_segment(value):
        raise InvalidInput(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")
    return value


class ModelRepository:
    """Safe for several gateway worker processes: writes hold a file lock, and every write bumps a
    generation file that readers check (one stat) before trusting their in-memory index. Within a
    process, writes run in worker threads while the event loop reads: the index is never changed in
    place, only replaced whole (copy on write), so a reader never iterates a dict being changed."""

    def __init__(self, root: Path, keep_versions: int = 0) -> None:
        self._keep_versions = keep_versions  # 0: keep every version
        self._pins = VersionPins(root / "pins")
        self._layout = RepositoryLayout(root)
        self._generation = Generation(root / "generation")
        self._lock_file = root / "lock"
        self._thread_lock = threading.Lock()
        self._versions: dict[str, dict[str, Manifest]] = {}
        self._active: dict[str, str] = {}
        with self._lock():
            self._layout.remove_crash_litter()
            if not self._generation.exists():
                self._bump()
            self._refresh()

    # Reading ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model with a stored version, active or not."""
        self._refresh()
        return sorted(self._versions)

    def catalogue(self) -> list[tuple[str, str | None, list[Manifest]]]:
        """(name, active version, versions oldest first) of every model, from one read of the index."""
        self._refresh()
        versions, active = self._versions, self._active
        return [
            (name, active.get(name), sorted(stored.values(), key=lambda m: m.created))
            for name, stored in sorted(versions.items())
        ]

    def active_version(self, name: str) -> str | None:
        self._refresh()
        return self._active.get(name)

    def all_versions(self) -> list[Manifest]:
        """Every stored version, by name, oldest first, from one fresh read of the index."""
        return [m for _, _, versions in self.catalogue() for m in versions]

    def versions_if_any(self, name: str) -> list[Manifest]:
        """Every version of a model, oldest first; none for a model not stored (see `versions`)."""
        self._refresh()
        return sorted(self._versions.get(name, {}).values(), key=lambda m: m.created)

    def get(self, name: str, version: str | None = None) -> Manifest:
        """A version of a model; without `version`, the active one."""
        self._refresh()
        versions = self._versions.get(name)
        if not versions:
            raise ModelNotFound(f"model {name!r} not found")
        if version is None and name not in self._active:
            raise ModelNotFound(f"model {name!r} has no active version: activate one of {sorted(versions)}")
        version = version or self._active[name]
        if version not in versions:
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
        return versions[version]

    def versions(self, name: str) -> list[Manifest]:
        """Every version of a model (404 when it has none), oldest first."""
        versions = self.versions_if_any(name)
        if not versions:
            raise ModelNotFound(f"model {name!r} not found")
        return versions

    def active(self) -> list[Manifest]:
        """The desired state: the active version of every model."""
        self._refresh()
        return [self._versions[name][version] for name, version in sorted(self._active.items())]

    def generation(self) -> object:
        """Changes whenever any process writes the repository."""
        self._refresh()
        return self._generation.seen

    def stored(self) -> set[tuple[str, str, str]]:
        """(name, version, served sha256) of every stored version: the artifact nodes know it by."""
        self._refresh()
        return {
            (m.name, m.version, m.served_sha256)
            for versions in self._versions.values()
            for m in versions.values()
        }

    def _artifact_path(self, sha256: str) -> Path | None:
        self._refresh()
        for versions in self._versions.values():
            for manifest in versions.values():
                if manifest.sha256 == sha256:
                    return self._layout.artifact_file(manifest)
                if manifest.served_sha256 == sha256:
                    return self._layout.graph_file(manifest)
        return None

    def open_artifact(self, sha256: str) -> BinaryIO | None:
        """The artifact, open: a version deleted or retired meanwhile (another thread or process)
        can no longer take the bytes from under a reader. None when no stored version has it."""
        for _ in range(3):  # a version removed between the look-up and the open: look again
            path = self._artifact_path(sha256)
            if path is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                return path.open("rb")
        return None

    # Writing ---------------------------------------------------------------------------------

    def store(
        self,
        name: str,
        version: str | None,
        data: bytes,
        fmt: ArtifactFormat,
        signature: ModelSchema,
        trusted_types: list[str] | None = None,
        batching: bool = True,
        pin: Pin | None = None,
        runtime: RuntimeChoice | None = None,
        graph: bytes | None = None,
    ) -> Manifest:
        """Store a new version, not yet active (see activate). Atomic: all of it appears, or nothing.
        `pin`: pinned in the same step, so retention cannot remove it before it is activated.
        `runtime`: the runtime chosen for it; `graph`: the ONNX graph compiled from it and verified,
        stored beside it, when that runtime serves it."""
        check_name(name)
        if version is not None:
            check_name(version, "version")
        with self._lock():
            existing = self._versions.get(name, {})
            version = version or _next_version(existing)
            if version in existing:
                raise VersionConflict(f"model {name!r} already has version {version!r}")
            manifest = Manifest(
                name=name,
                version=version,
                format=fmt,
                sha256=sha256_hex(data),
                size=len(data),
                created=datetime.now(UTC),
                signature=signature,
                trusted_types=trusted_types or [],
                batching=batching,
                runtime=runtime,
            )
            staged = self._layout.stage(manifest, data, graph)
            try:
                if pin is not None:
                    self._pins.pin(name, version, pin)
                self._layout.publish(staged, manifest)
            except BaseException:
                self._layout.discard(staged)
                if pin is not None:
                    self._pins.unpin(name, version, pin.holder)
                raise
            self._versions = {**self._versions, name: {**self._versions.get(name, {}), version: manifest}}
            self._retire_old_versions(name)
            self._bump()
            return manifest

    def pin(self, name: str, version: str, pin: Pin) -> None:
        """Keep a stored version from retention until unpinned (or the pin's lease lapses)."""
        with self._lock():
            if version not in self._versions.get(name, {}):
                raise ModelNotFound(f"model {name!r} has no version {version!r}")
            self._pins.pin(name, version, pin)

    def unpin(self, name: str, version: str, holder: str) -> None:
        """Release a pin, and apply retention to the model: what the pin held back may go now."""
        with self._lock():
            self._pins.unpin(name, version, holder)
            if self._retire_old_versions(name):
                self._bump()

    def activate(self, name: str, version: str, over_newer: bool = True) -> Manifest:
        """Make `version` the one unpinned requests get: one atomic pointer swap. Returns the active
        version afterwards: with `over_newer=False`, a version created later that is active already
        stays active (a deploy never undoes a later deploy that finished first)."""
        with self._lock():
            manifest = self._versions.get(name, {}).get(version)
            if manifest is None:
                raise ModelNotFound(f"model {name!r} has no version {version!r}")
            current = self._versions[name].get(self._active.get(name, ""))
            if not over_newer and current is not None and current.created > manifest.created:
                return current
            self._layout.write_active(name, version)
            self._active = {**self._active, name: version}
            self._retire_old_versions(name)
            self._bump()
            return manifest

    def previous_version(self, name: str) -> Manifest:
        """The version created just before the active one: what a rollback returns to."""
        versions = self.versions(name)
        active = self.get(name)
        earlier = [m for m in versions if m.created < active.created]
        if not earlier:
            raise ModelNotFound(f"model {name!r} has no version older than {active.version!r}")
        return earlier[-1]

    def delete(self, name: str) -> list[str]:
        """Remove a model and all its versions; returns the versions removed."""
        with self._lock():
            versions = sorted(self._versions.get(name, {}))
            if not versions:
                raise ModelNotFound(f"model {name!r} not found")
            doomed = self._layout.move_model_aside(name)
            self._versions = {n: v for n, v in self._versions.items() if n != name}
            self._active = {n: v for n, v in self._active.items() if n != name}
            self._pins.forget(name)
            self._bump()
        self._layout.discard(doomed)
        return versions

    def _retire_old_versions(self, name: str) -> list[str]:
        """Retention, under the write lock: remove the versions beyond the newest keep_versions that
        are neither active nor pinned. The caller bumps the generation."""
        stored = sorted(self._versions.get(name, {}).values(), key=lambda m: m.created)
        if not self._keep_versions or len(stored) <= self._keep_versions:
            return []
        protected = {self._active.get(name)} | self._pins.pinned(name)
        retired = [m.version for m in stored[: -self._keep_versions] if m.version not in protected]
        for version in retired:
            self._layout.remove_version(name, version)
        if retired:
            kept = {v: m for v, m in self._versions[name].items() if v not in retired}
            self._versions = {**self._versions, name: kept}
            logger.info("retention: removed %s versions %s (keeping %d)", name, retired, self._keep_versions)
        return retired

    # Internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Writers exclude each other across threads and processes; the index is fresh inside."""
        with self._thread_lock, self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._refresh()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _bump(self) -> None:
        self._generation.bump()

    def _refresh(self) -> None:
        """Re-read the index when another process wrote since we last looked."""
        self._generation.catch_up(self._scan)

    def _scan(self) -> None:
        """Build the new index aside, then swap it in: a reader in another thread sees the old
        index or the new one, never one half built."""
        self._versions, self._active = self._layout.scan()


def _next_version(existing: dict[str, Manifest]) -> str:
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)
