"""Model management: deploy, list, inspect, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from artifacts.formats import ArtifactError, ArtifactFormat, load_artifact
from artifacts.manifest import Manifest
from artifacts.schema import ModelSchema, inspect_schema
from inferrer import dependencies as deps
from inferrer.errors import InvalidInput, PayloadTooLarge, UpstreamUnavailable
from inferrer.repository import check_name
from wire.bearer import INFERENCE, MANAGEMENT
from wire.inferrer_answers import Deleted, Deployed, ModelList, ModelView, Switched
from wire.json import FastJSONResponse
from wire.openapi import answers

router = APIRouter(prefix="/api/v1/models")


@router.post(
    "",
    status_code=201,
    dependencies=[MANAGEMENT],
    responses=answers(Deployed, "Stored; activated or not, and why", status=201),
)
async def deploy(
    request: Request,
    name: Annotated[str, Form()],
    file: Annotated[UploadFile, File()],
    version: Annotated[str | None, Form()] = None,
    trusted: Annotated[bool, Form()] = False,
    trusted_types: Annotated[str | None, Form()] = None,
    activate: Annotated[bool, Form()] = True,
    batching: Annotated[bool, Form()] = True,
) -> FastJSONResponse:
    """Store a version (atomically), have every node load it, then make it active in one swap.

    `trusted=true` accepts a joblib file (it runs code when loaded); `trusted_types` lists extra
    types a skops file may contain (comma-separated); `activate=false` stages a version that only
    pinned requests use until it is activated; `batching=false` sends each request upstream alone.
    """
    check_name(name)
    if version is not None:
        check_name(version, "version")
    fmt = _format_of(file.filename or "")
    if fmt is ArtifactFormat.JOBLIB and not trusted:
        raise InvalidInput(
            "joblib files execute code when loaded: upload .skops, or pass trusted=true "
            "if you produced this file yourself"
        )
    limit = deps.settings(request).max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"artifact larger than the limit of {limit} bytes")
    if not data:
        raise InvalidInput("the uploaded file is empty")
    allowed = [t.strip() for t in (trusted_types or "").split(",") if t.strip()]
    signature = await asyncio.to_thread(_inspect, data, fmt, allowed)
    repository = deps.repository(request)
    manifest = await asyncio.to_thread(
        repository.store, name, version, data, fmt, signature, allowed, batching
    )
    # Nodes load the new version first; the switch is one pointer swap once they have it.
    # A node that missed the broadcast loads it on its first request.
    results = await deps.manager(request).broadcast_load(manifest)
    loaded = sorted(node for node, error in results.items() if error is None)
    activation = await _activate_deployed(request, manifest, loaded, activate)
    return FastJSONResponse(
        {
            "name": manifest.name,
            "version": manifest.version,
            **activation,
            "sha256": manifest.sha256,
            "size": manifest.size,
            "signature": manifest.signature.model_dump(),
            "nodes_loaded": loaded,
            "nodes_failed": {node: error for node, error in results.items() if error},
        },
        status_code=201,
    )


async def _activate_deployed(
    request: Request, manifest: Manifest, loaded: list[str], asked: bool
) -> dict[str, Any]:
    """The activation rule of a deploy: its version becomes active when asked (or when the model
    has no active version), only once at least one node has loaded it, and never over a version
    created after it that is active already (a concurrent deploy that finished first)."""
    repository = deps.repository(request)
    name = manifest.name
    if not (asked or repository.active_version(name) is None):
        reason = "staged: activate=false"
    elif not loaded:
        reason = "not activated: no node could load it (see nodes_failed); deploy again or activate it later"
    else:
        active = await asyncio.to_thread(repository.activate, name, manifest.version, False)
        if active.version == manifest.version:
            return {"activated": True, "active_version": active.version, "activation": "activated"}
        reason = f"not activated: version {active.version!r}, created after it, is active already"
    return {"activated": False, "active_version": repository.active_version(name), "activation": reason}


@router.get("", dependencies=[INFERENCE], responses=answers(ModelList, "Every model with a stored version"))
def list_models(request: Request) -> FastJSONResponse:
    repository = deps.repository(request)
    models = [_view(name, active, versions) for name, active, versions in repository.catalogue()]
    return FastJSONResponse({"models": models})


@router.get("/{name}", dependencies=[INFERENCE], responses=answers(ModelView, "The model and its versions"))
def get_model(name: str, request: Request) -> FastJSONResponse:
    repository = deps.repository(request)
    return FastJSONResponse(_view(name, repository.active_version(name), repository.versions(name)))


@router.post(
    "/{name}/versions/{version}/activate",
    dependencies=[MANAGEMENT],
    responses=answers(Switched, "The version is active"),
)
async def activate_version(name: str, version: str, request: Request) -> FastJSONResponse:
    """Switch unpinned traffic to `version` (a roll forward or back), after nodes have it loaded."""
    return await _switch(request, deps.repository(request).get(name, version))


@router.post(
    "/{name}/rollback",
    dependencies=[MANAGEMENT],
    responses=answers(Switched, "The previous version is active"),
)
async def rollback(name: str, request: Request) -> FastJSONResponse:
    """Activate the version created just before the active one."""
    return await _switch(request, deps.repository(request).previous_version(name))


async def _switch(request: Request, manifest: Manifest) -> FastJSONResponse:
    """An explicit switch (roll forward or back) may go to any stored version, once a node has it."""
    results = await deps.manager(request).broadcast_load(manifest)
    if all(results.values()):
        raise UpstreamUnavailable(
            f"no node could load {manifest.name!r} version {manifest.version!r}; the active version "
            f"stays {deps.repository(request).active_version(manifest.name)!r}: {results}"
        )
    await asyncio.to_thread(deps.repository(request).activate, manifest.name, manifest.version)
    return FastJSONResponse(
        {
            "name": manifest.name,
            "active_version": manifest.version,
            "nodes_loaded": sorted(node for node, error in results.items() if error is None),
        }
    )


@router.delete(
    "/{name}", dependencies=[MANAGEMENT], responses=answers(Deleted, "Every version deleted and unloaded")
)
async def delete_model(name: str, request: Request) -> FastJSONResponse:
    versions = await asyncio.to_thread(deps.repository(request).delete, name)
    results = await deps.manager(request).broadcast_unload(name)
    return FastJSONResponse(
        {
            "name": name,
            "deleted_versions": versions,
            "nodes_unloaded": sorted(node for node, error in results.items() if error is None),
        }
    )


def _format_of(filename: str) -> ArtifactFormat:
    try:
        return ArtifactFormat.from_filename(filename)
    except ArtifactError as exc:
        raise InvalidInput(str(exc)) from None


def _inspect(data: bytes, fmt: ArtifactFormat, trusted_types: list[str]) -> ModelSchema:
    try:
        return inspect_schema(load_artifact(data, fmt, trusted_types))
    except ArtifactError as exc:
        raise InvalidInput(str(exc)) from None


def _view(name: str, active: str | None, versions: list[Manifest]) -> dict[str, Any]:
    return {
        "name": name,
        "active_version": active,
        "versions": [manifest.model_dump(mode="json") for manifest in versions],
    }
