"""Routes the nodes use: the desired state and artifacts by sha256. Not proxied by nginx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from artifacts.names import SHA256_PATTERN
from inferrer.api import dependencies as deps
from inferrer.errors import InvalidInput, ModelNotFound
from wire.bearer import MANAGEMENT
from wire.json import FastJSONResponse
from wire.node_calls import DesiredState, VersionRef

router = APIRouter(prefix="/internal/v1", include_in_schema=False, dependencies=[MANAGEMENT])

_SHA256 = re.compile(SHA256_PATTERN)
_CHUNK_BYTES = 1024 * 1024


@router.get("/desired")
def desired(request: Request) -> Response:
    # One read of the index for both lists: every version a node is told to load is one it keeps
    # (a node deletes the cached artifacts of versions it is not told to keep).
    catalogue = deps.repository(request).catalogue()
    stored = [m for _, _, versions in catalogue for m in versions]
    keep = [VersionRef(name=m.name, version=m.version, sha256=m.served_sha256) for m in stored]
    load = [m for _, active, versions in catalogue for m in versions if m.version == active]
    state = DesiredState(load=load, keep=keep)
    return Response(state.model_dump_json(), media_type="application/json")


@router.get("/manifests/{name}/{version}")
def manifest(name: str, version: str, request: Request) -> FastJSONResponse:
    """For a node loading a version on demand (a pinned request, or a model unloaded while idle)."""
    return FastJSONResponse(deps.repository(request).get(name, version).model_dump(mode="json"))


@router.get("/artifacts/{sha256}")
def artifact(sha256: str, request: Request) -> StreamingResponse:
    """Streamed from a handle opened here: a version removed meanwhile answers 404 or its whole
    bytes, never a 500 half-way."""
    if not _SHA256.fullmatch(sha256):
        raise InvalidInput("an artifact is named by its lowercase hex sha256")
    artifact = deps.repository(request).open_artifact(sha256)
    if artifact is None:
        raise ModelNotFound(f"no artifact with sha256 {sha256}")
    return StreamingResponse(
        _chunks(artifact.handle),
        media_type="application/octet-stream",
        headers={"content-length": str(artifact.size)},
    )


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK_BYTES):
            yield chunk
