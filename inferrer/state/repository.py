"""The model repository: every stored version of every model, which one is active, and the rules
that change them (names, version numbers, conflicts, retention), under one write lock. Where the
index and the files live, and how each change is made atomic, is its backend (backend.py): a folder
by default, or an SQL index with artifacts in a bucket that several gateways share.

Version retention: with keep_versions=N, a write that stores or activates a version removes the
versions of that model beyond the newest N, but never the active one or a pinned one (pins.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from artifacts.formats import ArtifactFormat, sha256_hex
from artifacts.manifest import Manifest, RuntimeChoice
from artifacts.names import is_path_segment
from artifacts.schema import ModelSchema
from inferrer.errors import InvalidInput, ModelInUse, ModelNotFound, VersionConflict
from inferrer.state.backend import Index, OpenArtifact, RepositoryBackend
from inferrer.state.pins import Pin, describe_users

logger = logging.getLogger(__name__)


def check_name(value: str, what: str = "model name") -> str:
    """Allow-listed characters only, and never '.' or '..': a name is one path segment."""
    if not is_path_segment(value):
        raise InvalidInput(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")
    return value


class ModelRepository:
    """Safe for several gateway processes: writes hold the backend's lock, and every read takes the
    backend's current index, which is never changed in place, only replaced whole (a reader never
    iterates a dict being changed). Within a process, writes run in worker threads, one at a time."""

    def __init__(self, backend: RepositoryBackend, keep_versions: int = 0) -> None:
        self._keep_versions = keep_versions  # 0: keep every version
        self._backend = backend
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        self._backend.close()

    # Reading ---------------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether the model has a stored version, active or not."""
        return name in self._backend.current().versions

    def names(self) -> list[str]:
        """Every model with a stored version, active or not."""
        return sorted(self._backend.current().versions)

    def catalogue(self) -> list[tuple[str, str | None, list[Manifest]]]:
        """(name, active version, versions oldest first) of every model, from one read of the index."""
        index = self._backend.current()
        return [
            (name, index.active.get(name), sorted(stored.values(), key=lambda m: m.created))
            for name, stored in sorted(index.versions.items())
        ]

    def active_version(self, name: str) -> str | None:
        return self._backend.current().active.get(name)

    def all_versions(self) -> list[Manifest]:
        """Every stored version, by name, oldest first, from one read of the index."""
        return [m for _, _, versions in self.catalogue() for m in versions]

    def versions_if_any(self, name: str) -> list[Manifest]:
        """Every version of a model, oldest first; none for a model not stored (see `versions`)."""
        stored = self._backend.current().versions.get(name, {})
        return sorted(stored.values(), key=lambda m: m.created)

    def get(self, name: str, version: str | None = None) -> Manifest:
        """A version of a model; without `version`, the active one."""
        index = self._backend.current()
        versions = index.versions.get(name)
        if not versions:
            raise ModelNotFound(f"model {name!r} not found")
        if version is None and name not in index.active:
            raise ModelNotFound(f"model {name!r} has no active version: activate one of {sorted(versions)}")
        version = version or index.active[name]
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
        index = self._backend.current()
        return [index.versions[name][version] for name, version in sorted(index.active.items())]

    def generation(self) -> object:
        """Changes whenever any process writes the repository."""
        return self._backend.current().stamp

    def stored(self) -> set[tuple[str, str, str]]:
        """(name, version, served sha256) of every stored version: the artifact nodes know it by."""
        return {(m.name, m.version, m.served_sha256) for m in self._backend.current().manifests()}

    def open_artifact(self, sha256: str) -> OpenArtifact | None:
        """The artifact, open: a version deleted or retired meanwhile (another thread or process)
        can no longer take the bytes from under a reader. None when no stored version has it."""
        for _ in range(3):  # a version removed between the look-up and the open: look again
            index = self._backend.current()
            found = next((m for m in index.manifests() if sha256 in (m.sha256, m.served_sha256)), None)
            if found is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                return self._backend.open_artifact(index, found, graph=found.sha256 != sha256)
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
        staged = self._backend.stage(fmt, data, graph)  # before the lock: an upload takes a while
        draft: _Draft | None = None
        try:
            with self._writing() as draft:
                existing = draft.versions.get(name, {})
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
                if pin is not None:
                    self._backend.pin(name, version, pin)
                self._backend.publish(staged, manifest)
                draft.put(manifest)
                self._retire_old_versions(draft, name)
        except BaseException:
            if draft is None or not draft.committed:  # a committed version's files stay, always
                self._backend.discard(staged)
            raise
        return manifest

    def pin(self, name: str, version: str, pin: Pin) -> None:
        """Keep a stored version from retention until unpinned (or the pin's lease lapses)."""
        with self._writing() as draft:
            if version not in draft.versions.get(name, {}):
                raise ModelNotFound(f"model {name!r} has no version {version!r}")
            self._backend.pin(name, version, pin)

    def unpin(self, name: str, version: str, holder: str) -> None:
        """Release a pin, and apply retention to the model: what the pin held back may go now."""
        with self._writing() as draft:
            self._backend.unpin(name, version, holder)
            self._retire_old_versions(draft, name)

    def activate(self, name: str, version: str, over_newer: bool = True) -> Manifest:
        """Make `version` the one unpinned requests get: one atomic pointer swap. Returns the active
        version afterwards: with `over_newer=False`, a version created later that is active already
        stays active (a deploy never undoes a later deploy that finished first)."""
        with self._writing() as draft:
            manifest = draft.versions.get(name, {}).get(version)
            if manifest is None:
                raise ModelNotFound(f"model {name!r} has no version {version!r}")
            current = draft.versions[name].get(draft.active.get(name, ""))
            if not over_newer and current is not None and current.created > manifest.created:
                return current
            self._backend.write_active(name, version)
            draft.activate(name, version)
            self._retire_old_versions(draft, name)
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
        with self._writing() as draft:
            versions = sorted(draft.versions.get(name, {}))
            if not versions:
                raise ModelNotFound(f"model {name!r} not found")
            if users := describe_users(self._backend.holders(name)):
                raise ModelInUse(f"model {name!r} is used by {', '.join(users)}: delete {users[0]} first")
            self._backend.remove_model(name)
            draft.remove(name)
        return versions

    def _retire_old_versions(self, draft: _Draft, name: str) -> None:
        """Retention, under the write lock: remove the versions beyond the newest keep_versions that
        are neither active nor pinned."""
        stored = sorted(draft.versions.get(name, {}).values(), key=lambda m: m.created)
        if not self._keep_versions or len(stored) <= self._keep_versions:
            return
        protected = {draft.active.get(name)} | self._backend.pinned(name)
        retired = [m for m in stored[: -self._keep_versions] if m.version not in protected]
        for manifest in retired:
            self._backend.remove_version(manifest)
            draft.retire(manifest)
        if retired:
            removed = [m.version for m in retired]
            logger.info("retention: removed %s versions %s (keeping %d)", name, removed, self._keep_versions)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Draft]:
        """Writers exclude each other across threads and processes; the draft starts from the fresh
        index, and what it changed becomes the index when the block ends without an error; other
        gateway processes have it before this returns."""
        with self._thread_lock, self._backend.locked() as fresh:
            draft = _Draft(fresh)
            yield draft
            if draft.changed:
                self._backend.commit(draft.versions, draft.active)
        draft.committed = True
        if draft.changed:
            self._backend.settle()


class _Draft:
    """The index as a write changes it, under the lock."""

    def __init__(self, index: Index) -> None:
        self.versions = {name: dict(stored) for name, stored in index.versions.items()}
        self.active = dict(index.active)
        self.changed = False
        self.committed = False  # the lock was released without an error: the write stands

    def put(self, manifest: Manifest) -> None:
        self.versions.setdefault(manifest.name, {})[manifest.version] = manifest
        self.changed = True

    def activate(self, name: str, version: str) -> None:
        self.active[name] = version
        self.changed = True

    def retire(self, manifest: Manifest) -> None:
        del self.versions[manifest.name][manifest.version]
        self.changed = True

    def remove(self, name: str) -> None:
        self.versions.pop(name, None)
        self.active.pop(name, None)
        self.changed = True


def _next_version(existing: Mapping[str, Manifest]) -> str:
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)
