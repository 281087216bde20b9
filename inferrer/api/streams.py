"""Stream bindings: a Redis stream consumed by a model, a graph or a converge step (management
scope to create, pause, resume and delete; inference scope to read and to add messages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from artifacts.names import Segment
from inferrer.api import dependencies as deps
from inferrer.streams.spec import message_batch, stream_binding
from wire.bearer import INFERENCE, MANAGEMENT
from wire.errors import parse_body
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals, request_body
from wire.stream_answers import MessagesAdded, StreamDetail, StreamList, StreamView

router = APIRouter(prefix="/api/v1/streams")

BindingName = Annotated[Segment, Path()]


@router.post(
    "",
    status_code=201,
    dependencies=[MANAGEMENT],
    openapi_extra=request_body(stream_binding.json_schema()),
    responses={
        **answers(StreamView, "Consuming; `Location` names the binding", status=201),
        **refusals(
            "Refused: 404 for an unknown model, graph or version; 409 for a name a binding has "
            "already; 422 for a body that breaks the schema, a prediction the model does not offer, "
            "or a stream key that holds something else"
        ),
    },
)
async def create(request: Request) -> Response:
    """Consume `input` through the consumer group `group`: each message predicted with `model` (or
    `graph`) and written to `output` with its source id, key and predictions; or, with `converge`,
    `count` messages of one key joined into one. What cannot be handled goes to `dead_letter`.
    Every stream route answers 503 when the gateway has no broker, or it does not answer."""
    spec = parse_body(stream_binding, await request.body())
    view = await deps.streams(request).create(spec)
    headers = {"Location": f"/api/v1/streams/{spec.name}"}
    return FastJSONResponse(view.model_dump(mode="json"), status_code=201, headers=headers)


@router.get(
    "",
    dependencies=[INFERENCE],
    responses=answers(StreamList, "Every binding, by name"),
)
async def listing(request: Request) -> Response:
    return FastJSONResponse((await deps.streams(request).listing()).model_dump(mode="json"))


@router.get(
    "/{name}",
    dependencies=[INFERENCE],
    responses={
        **answers(StreamDetail, "The binding and its figures (lag, pending, dead letters, rate)"),
        **refusals("404 for an unknown binding"),
    },
)
async def show(request: Request, name: BindingName) -> Response:
    return FastJSONResponse((await deps.streams(request).detail(name)).model_dump(mode="json"))


@router.post(
    "/{name}/messages",
    status_code=201,
    dependencies=[INFERENCE],
    openapi_extra=request_body(message_batch.json_schema()),
    responses={
        **answers(MessagesAdded, "Added to the binding's input stream, in order", status=201),
        **refusals("404 for an unknown binding; 422 for a body that breaks the schema"),
    },
)
async def produce(request: Request, name: BindingName) -> Response:
    """Add messages to the binding's input, as a producer would (`XADD`): for tests and demos."""
    batch = parse_body(message_batch, await request.body())
    added = await deps.streams(request).produce(name, batch.messages)
    return FastJSONResponse(added.model_dump(mode="json"), status_code=201)


@router.post(
    "/{name}/pause",
    dependencies=[MANAGEMENT],
    responses={
        **answers(StreamView, "Paused: no new message is read; batches under way settle"),
        **refusals("404 for an unknown binding"),
    },
)
async def pause(request: Request, name: BindingName) -> Response:
    return FastJSONResponse((await deps.streams(request).pause(name, True)).model_dump(mode="json"))


@router.post(
    "/{name}/resume",
    dependencies=[MANAGEMENT],
    responses={
        **answers(StreamView, "Consuming again, from where its group stopped"),
        **refusals("404 for an unknown binding"),
    },
)
async def resume(request: Request, name: BindingName) -> Response:
    return FastJSONResponse((await deps.streams(request).pause(name, False)).model_dump(mode="json"))


@router.delete(
    "/{name}",
    dependencies=[MANAGEMENT],
    responses={
        **answers(StreamView, "No longer consumed (as it was); its streams and consumer group stay"),
        **refusals("404 for an unknown binding"),
    },
)
async def delete(request: Request, name: BindingName) -> Response:
    return FastJSONResponse((await deps.streams(request).delete(name)).model_dump(mode="json"))
