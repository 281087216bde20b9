"""A model's lifecycle, each change one sequence: store, nodes sync now, switch.

Handlers only parse and render; what a deploy, a switch (activate, roll back), a delete, and the V2
repository's load and unload do is here. The prediction cache needs no call: it follows the
repository's generation (inferrer/dataplane/prediction_cache.py).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from artifacts.formats import ArtifactError, ArtifactFormat
from artifacts.manifest import Manifest, RuntimeRequest
from inferrer.control.inspection import inspect_upload
from inferrer.control.nodes import FleetNodes, SyncResult
from inferrer.errors import DeployOvertaken, InvalidInput, ModelNotFound, UpstreamUnavailable
from inferrer.state.pins import Pin
from inferrer.state.repository import ModelRepository, check_name
from wire.node_calls import SyncAnswer


@dataclass(frozen=True)
class Upload:
    """A deploy's request, as the API received it."""

    name: str
    filename: str
    data: bytes
    version: str | None = None
    trusted: bool = False
    trusted_types: tuple[str, ...] = ()
    activate: bool = True
    batching: bool = True
    runtime: RuntimeRequest = "auto"
    sample: bytes | None = None  # a CSV of rows the runtime's verification probes besides its own


class ModelLifecycle:
    def __init__(
        self,
        repository: ModelRepository,
        nodes: FleetNodes,
        deploy_pin_s: float,
        activate_with_no_node: bool = False,
    ) -> None:
        """`deploy_pin_s`: how long a deploy's version is kept from retention at most, should the
        deploy never finish (a killed gateway); a deploy that answers releases it at once.
        `activate_with_no_node`: an autoscaled fleet that may run no node activates a deploy when
        none runs (its first node loads it before it is ready)."""
        self.repository = repository
        self.nodes = nodes
        self._deploy_pin_s = deploy_pin_s
        self._activate_with_no_node = activate_with_no_node

    async def deploy(self, upload: Upload) -> dict[str, Any]:
        """Check and store a version (atomically), have every node load it, then make it active in
        one swap, by the activation rule (`_activate_deployed`)."""
        check_name(upload.name)
        if upload.version is not None:
            check_name(upload.version, "version")
        fmt = _format_of(upload.filename)
        if fmt is ArtifactFormat.JOBLIB and not upload.trusted:
            raise InvalidInput(
                "joblib files execute code when loaded: upload .skops, or pass trusted=true "
                "if you produced this file yourself"
            )
        if not upload.data:
            raise InvalidInput("the uploaded file is empty")
        allowed = list(upload.trusted_types)
        inspected = await asyncio.to_thread(
            inspect_upload, upload.data, fmt, allowed, upload.runtime, upload.sample
        )
        # Pinned until this deploy answers: concurrent deploys' retention never removes it meanwhile.
        pin = Pin(f"deploy-{uuid.uuid4().hex}", lease_s=self._deploy_pin_s)
        manifest = await asyncio.to_thread(
            self.repository.store,
            upload.name,
            upload.version,
            upload.data,
            fmt,
            inspected.signature,
            allowed,
            upload.batching,
            pin,
            inspected.runtime,
            inspected.graph,
        )
        try:
            results = await self.nodes.sync(warm=[manifest])
            loaded, failed = _holding(manifest, results)
            try:
                no_node = self._activate_with_no_node and not results
                activation = await self._activate_deployed(manifest, loaded, upload.activate, no_node)
            except ModelNotFound:
                activation = {}
            if manifest not in self.repository.versions_if_any(manifest.name):
                raise DeployOvertaken(
                    f"model {manifest.name!r} was deleted while this deploy was under way: version "
                    f"{manifest.version!r} was stored, then removed with the model; deploy again"
                )
        finally:
            await asyncio.to_thread(self.repository.unpin, manifest.name, manifest.version, pin.holder)
        return {
            "name": manifest.name,
            "version": manifest.version,
            **activation,
            "sha256": manifest.sha256,
            "size": manifest.size,
            "signature": manifest.signature.model_dump(),
            "runtime": inspected.runtime.model_dump(),
            "nodes_loaded": loaded,
            "nodes_failed": failed,
        }

    async def _activate_deployed(
        self, manifest: Manifest, loaded: list[str], asked: bool, no_nodes: bool
    ) -> dict[str, Any]:
        """A deploy's version becomes active when asked (or when the model has no active version),
        only once at least one node has loaded it (or no node runs at all: an autoscaled fleet at
        zero, whose first node loads it before it is ready), and never over a version created after
        it that is active already (a concurrent deploy that finished first)."""
        name = manifest.name
        if not (asked or self.repository.active_version(name) is None):
            reason = "staged: activate=false"
        elif not loaded and not no_nodes:
            reason = (
                "not activated: no node could load it (see nodes_failed); deploy again or activate it later"
            )
        else:
            active = await asyncio.to_thread(self.repository.activate, name, manifest.version, False)
            if active.version == manifest.version:
                return {"activated": True, "active_version": active.version, "activation": "activated"}
            reason = f"not activated: version {active.version!r}, created after it, is active already"
        return {
            "activated": False,
            "active_version": self.repository.active_version(name),
            "activation": reason,
        }

    async def activate(self, name: str, version: str) -> dict[str, Any]:
        """Switch unpinned traffic to `version` (a roll forward or back)."""
        return await self._switch(self.repository.get(name, version))

    async def rollback(self, name: str) -> dict[str, Any]:
        """Activate the version created just before the active one."""
        return await self._switch(self.repository.previous_version(name))

    async def _switch(self, manifest: Manifest) -> dict[str, Any]:
        """An explicit switch may go to any stored version, once a node has it loaded."""
        loaded, failed = _holding(manifest, await self.nodes.sync(warm=[manifest]))
        if manifest not in self.repository.versions_if_any(manifest.name):
            raise ModelNotFound(
                f"model {manifest.name!r} version {manifest.version!r} was deleted while this switch "
                "was under way"
            )
        if not loaded:
            raise UpstreamUnavailable(
                f"no node could load {manifest.name!r} version {manifest.version!r}; the active version "
                f"stays {self.repository.active_version(manifest.name)!r}: {failed}"
            )
        await asyncio.to_thread(self.repository.activate, manifest.name, manifest.version)
        return {"name": manifest.name, "active_version": manifest.version, "nodes_loaded": loaded}

    async def delete(self, name: str) -> dict[str, Any]:
        """Delete every version; nodes unload it at once (requests under way finish first)."""
        versions = await asyncio.to_thread(self.repository.delete, name)
        results = await self.nodes.sync()
        unloaded = sorted(
            node
            for node, result in results.items()
            if isinstance(result, SyncAnswer) and all(ref.name != name for ref in result.loaded)
        )
        return {"name": name, "deleted_versions": versions, "nodes_unloaded": unloaded}

    async def warm(self, name: str) -> dict[str, Any]:
        """The V2 repository's load: the active version, loaded on every node now."""
        manifest = self.repository.get(name)
        loaded, failed = _holding(manifest, await self.nodes.sync(warm=[manifest]))
        if not loaded:
            raise UpstreamUnavailable(f"no node loaded {name!r}: {failed}")
        return {"name": name, "version": manifest.version, "nodes_loaded": loaded}

    async def release(self, name: str) -> dict[str, Any]:
        """The V2 repository's unload: nodes release the model's memory; it stays deployed and loads
        again on its next request."""
        if name not in self.repository.names():
            raise ModelNotFound(f"model {name!r} not found")
        results = await self.nodes.sync(release=[name])
        released = sorted(node for node, result in results.items() if isinstance(result, SyncAnswer))
        return {"name": name, "nodes_unloaded": released}


def _holding(manifest: Manifest, results: dict[str, SyncResult]) -> tuple[list[str], dict[str, str]]:
    """The nodes that hold exactly this artifact after a sync, and why each other one does not."""
    loaded, failed = [], {}
    key = f"{manifest.name}/{manifest.version}"
    for node, result in results.items():
        if isinstance(result, str):
            failed[node] = result
        elif any(
            ref.sha256 == manifest.served_sha256 and (ref.name, ref.version) == manifest.key
            for ref in result.loaded
        ):
            loaded.append(node)
        else:
            failed[node] = result.failed.get(key, "not loaded after the sync")
    return sorted(loaded), failed


def _format_of(filename: str) -> ArtifactFormat:
    try:
        return ArtifactFormat.from_filename(filename)
    except ArtifactError as exc:
        raise InvalidInput(str(exc)) from None
