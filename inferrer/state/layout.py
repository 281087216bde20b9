"""The repository's files: <root>/models/<name>/<version>/{artifact.<format>,manifest.json} (and
graph.onnx, the verified ONNX graph compiled from a scikit-learn upload, where there is one), an
ACTIVE pointer per model, and <root>/staging where writes are prepared and removals are moved aside.

A version is written in staging and renamed into place, so a reader never sees half a model; what a
write killed half-way leaves in staging is removed when the repository is next opened."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from inferrer.state.generation import replace_text

_MANIFEST = "manifest.json"
_GRAPH = "graph.onnx"
_ACTIVE = "ACTIVE"


class RepositoryLayout:
    """Where each part of a stored model lives, and the atomic steps that change them. Knows files,
    not rules: the repository decides what to write, under its lock."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._models_dir = root / "models"
        self._staging_dir = root / "staging"
        self._models_dir.mkdir(parents=True, exist_ok=True)
        self._staging_dir.mkdir(parents=True, exist_ok=True)
        self._claims: dict[Path, int] = {}  # staging folder -> its open descriptor, locked

    def remove_crash_litter(self) -> None:
        """What a write killed half-way leaves: a staged version, a model being deleted, the temp
        file of a pointer. Call under the write lock, so no other process is writing them now but
        the stagings that a live process still claims (see `claim_staging`)."""
        for leftover in self._staging_dir.iterdir():
            if leftover.name.startswith(("retired-", "deleted-")) or not _claimed(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
        for temp in [*self._root.glob(".generation.*"), *self._models_dir.glob(f"*/.{_ACTIVE}.*")]:
            temp.unlink(missing_ok=True)

    def artifact_file(self, manifest: Manifest) -> Path:
        return self._models_dir / manifest.name / manifest.version / _artifact_name(manifest)

    def graph_file(self, manifest: Manifest) -> Path:
        return self._models_dir / manifest.name / manifest.version / _GRAPH

    def claim_staging(self) -> Path:
        """A new staging folder, claimed by this process (a shared lock on the folder, held until it
        is published or discarded, and dropped by the kernel when the process dies). Call under the
        write lock: `remove_crash_litter` then never meets one made but not yet claimed."""
        staged = Path(tempfile.mkdtemp(dir=self._staging_dir))
        claim = os.open(staged, os.O_RDONLY)
        fcntl.flock(claim, fcntl.LOCK_SH)
        self._claims[staged] = claim
        return staged

    def stage(self, staged: Path, fmt: ArtifactFormat, data: bytes, graph: bytes | None = None) -> Path:
        """A version's files written in a claimed staging folder, outside the models folder: its
        artifact path is returned; `publish` or `discard` it."""
        try:
            artifact = staged / f"artifact.{fmt.value}"
            artifact.write_bytes(data)
            if graph is not None:
                (staged / _GRAPH).write_bytes(graph)
        except BaseException:
            self.discard(staged)
            raise
        return artifact

    def publish(self, staged: Path, manifest: Manifest) -> None:
        """The manifest beside the staged files, then one rename: the whole version appears at once."""
        folder = staged.parent
        (folder / _MANIFEST).write_text(manifest.model_dump_json(indent=2))
        (self._models_dir / manifest.name).mkdir(exist_ok=True)
        os.rename(folder, self._models_dir / manifest.name / manifest.version)
        self._release(folder)

    def discard(self, staged: Path) -> None:
        """A staged version (by its artifact path or folder), or a folder moved aside."""
        folder = staged.parent if staged.parent in self._claims else staged
        shutil.rmtree(folder, ignore_errors=True)
        self._release(folder)

    def _release(self, staged: Path) -> None:
        if (claim := self._claims.pop(staged, None)) is not None:
            os.close(claim)

    def write_active(self, name: str, version: str) -> None:
        replace_text(self._models_dir / name / _ACTIVE, version)

    def remove_version(self, name: str, version: str) -> None:
        """Renamed aside first (one atomic step readers see), then removed."""
        doomed = self._staging_dir / f"retired-{uuid.uuid4().hex}"
        os.rename(self._models_dir / name / version, doomed)
        self.discard(doomed)

    def move_model_aside(self, name: str) -> Path:
        """The whole model out of the models folder in one rename; `discard` the result later,
        outside the write lock."""
        doomed = self._staging_dir / f"deleted-{uuid.uuid4().hex}"
        os.rename(self._models_dir / name, doomed)
        return doomed

    def scan(self) -> tuple[dict[str, dict[str, Manifest]], dict[str, str]]:
        """(versions by model, active version by model) as stored now. Takes no lock: a writer in
        another process may remove a version or a model while this looks; what vanished is left
        out, and that writer's generation bump, which comes after its change, makes the next look
        scan again."""
        versions: dict[str, dict[str, Manifest]] = {}
        active: dict[str, str] = {}
        for model_dir in self._models_dir.iterdir():
            for manifest_file in model_dir.glob(f"*/{_MANIFEST}"):
                with contextlib.suppress(FileNotFoundError):
                    manifest = Manifest.model_validate_json(manifest_file.read_text())
                    versions.setdefault(manifest.name, {})[manifest.version] = manifest
            with contextlib.suppress(FileNotFoundError):
                pointer = (model_dir / _ACTIVE).read_text()
                if pointer in versions.get(model_dir.name, {}):
                    active[model_dir.name] = pointer
        return versions, active


def _claimed(staged: Path) -> bool:
    """Whether a live process holds the claim on a staging folder."""
    try:
        probe = os.open(staged, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)
    return False


def _artifact_name(manifest: Manifest) -> str:
    return f"artifact.{manifest.format.value}"
