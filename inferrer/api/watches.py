"""Watched folders and prefixes: their new files become jobs (inference scope to read; management
scope to create, pause, resume and delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from artifacts.names import Segment
from inferrer.api import dependencies as deps
from inferrer.watches.spec import watch_spec
from wire.bearer import INFERENCE, MANAGEMENT
from wire.errors import parse_body
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals, request_body
from wire.watch_answers import FileState, WatchDetail, WatchList, WatchView

router = APIRouter(prefix="/api/v1/watches")

WatchName = Annotated[Segment, Path()]


@router.post(
    "",
    status_code=201,
    dependencies=[MANAGEMENT],
    openapi_extra=request_body(watch_spec.json_schema()),
    responses={
        **answers(WatchView, "Watching; `Location` names the watch", status=201),
        **refusals(
            "Refused: 400 for a location outside the data directory (absolute, '..', a link out, a "
            "hidden name) or not a path or s3://bucket/prefix; 404 for an unknown model or version; "
            "409 for a name a watch has already; 422 for a body that breaks the schema, or a "
            "prediction the model does not offer. `output` (the old name of `output_location`) is "
            "still taken, for one release: the answer then carries `Deprecation: true` and a `Warning`"
        ),
    },
)
async def create(request: Request) -> Response:
    """Watch `input` for files named as `pattern`: each new one (or new version of one) becomes
    one job of `model`, its output `<output_location>/model=<m>/version=<v>/<name>.<csv|jsonl>`
    (as the input's format; parquet gives JSON lines)."""
    spec = parse_body(watch_spec, await request.body())
    view = await deps.watches(request).create(spec)
    headers = {"Location": f"/api/v1/watches/{spec.name}", **spec.deprecation_headers()}
    return FastJSONResponse(view.model_dump(mode="json"), status_code=201, headers=headers)


@router.get("", dependencies=[INFERENCE], responses=answers(WatchList, "Every watch, by name"))
async def listing(request: Request) -> Response:
    return FastJSONResponse((await deps.watches(request).listing()).model_dump(mode="json"))


@router.get(
    "/{name}",
    dependencies=[INFERENCE],
    responses=answers(WatchDetail, "The watch and its files, newest first; `state=failed`: the dead letter"),
)
async def show(
    request: Request,
    name: WatchName,
    state: FileState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return FastJSONResponse((await deps.watches(request).view(name, state, limit)).model_dump(mode="json"))


@router.post(
    "/{name}/pause",
    dependencies=[MANAGEMENT],
    responses=answers(WatchView, "Paused: no new file is picked up; jobs under way finish"),
)
async def pause(request: Request, name: WatchName) -> Response:
    return FastJSONResponse((await deps.watches(request).pause(name, True)).model_dump(mode="json"))


@router.post(
    "/{name}/resume",
    dependencies=[MANAGEMENT],
    responses=answers(WatchView, "Watching again: files that came meanwhile are picked up"),
)
async def resume(request: Request, name: WatchName) -> Response:
    return FastJSONResponse((await deps.watches(request).pause(name, False)).model_dump(mode="json"))


@router.delete(
    "/{name}",
    dependencies=[MANAGEMENT],
    responses=answers(WatchView, "No longer watched (as it was); its outputs stay"),
)
async def delete(request: Request, name: WatchName) -> Response:
    return FastJSONResponse((await deps.watches(request).delete(name)).model_dump(mode="json"))
