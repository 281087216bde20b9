"""Routes the nodes use: the desired state and artifacts by sha256. Not proxied by nginx."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.responses import Response

from artifacts.names import SHA256_PATTERN
from inferrer.api import dependencies as deps
from inferrer.errors import InvalidInput, ModelNotFound
from wire.bearer import MANAGEMENT
from wire.json import FastJSONResponse
from wire.node_calls import DesiredState, VersionRef

router = APIRouter(prefix="/internal/v1", include_in_schema=False, dependencies=[MANAGEMENT])

_SHA256 = re.compile(SHA256_PATTERN)


@router.get("/desired")
def desired(request: Request) -> Response:
    repository = deps.repository(request)
    keep = [VersionRef(name=m.name, version=m.version, sha256=m.sha256) for m in repository.all_versions()]
    state = DesiredState(load=repository.active(), keep=keep)
    return Response(state.model_dump_json(), media_type="application/json")


@router.get("/manifests/{name}/{version}")
def manifest(name: str, version: str, request: Request) -> FastJSONResponse:
    """For a node loading a version on demand (a pinned request, or a model unloaded while idle)."""
    return FastJSONResponse(deps.repository(request).get(name, version).model_dump(mode="json"))


@router.get("/artifacts/{sha256}")
def artifact(sha256: str, request: Request) -> FileResponse:
    if not _SHA256.fullmatch(sha256):
        raise InvalidInput("an artifact is named by its lowercase hex sha256")
    path = deps.repository(request).artifact_path(sha256)
    if path is None:
        raise ModelNotFound(f"no artifact with sha256 {sha256}")
    return FileResponse(path, media_type="application/octet-stream")
