"""The SageMaker container contract, so the fleet can stand where a SageMaker-style endpoint is
expected: `GET /ping` and `POST /invocations` (inference scope, limits and metrics as predict)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from inferrer.api import dependencies as deps
from inferrer.api.predict import predict_with
from inferrer.api.rest_codec import PREDICT_BODY_SCHEMA
from inferrer.errors import InvalidInput, UnsupportedMediaType
from wire.bearer import INFERENCE
from wire.inferrer_answers import FleetNotReady, FleetReady, Prediction
from wire.json import FastJSONResponse
from wire.openapi import answers, readiness, refusals, request_body

router = APIRouter()

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


@router.get("/ping", responses=readiness(FleetReady, FleetNotReady, "a node is ready with the default model"))
async def ping(request: Request) -> FastJSONResponse:
    """200 only when a node is ready and holds the default model (`INFERRER_DEFAULT_MODEL`; unset:
    any ready node); 503 otherwise, as SageMaker's health check expects."""
    ready_nodes = await deps.nodes(request).ready_nodes(holding=deps.settings(request).default_model)
    return FastJSONResponse(
        {"ready": bool(ready_nodes), "ready_nodes": ready_nodes}, status_code=200 if ready_nodes else 503
    )


@router.post(
    "/invocations",
    dependencies=[INFERENCE],
    openapi_extra=request_body(PREDICT_BODY_SCHEMA, csv=True),
    responses={
        **answers(Prediction, "As predict answers (`Accept: text/csv`: one CSV line per row)", csv=True),
        **refusals(
            "Refused: 415 for a body that is neither application/json nor text/csv; 422 when no "
            f"model is named ({TARGET_MODEL_HEADER}) and no default model is set, or for rows the "
            "model cannot take; 413 for more rows than the limit; 404 for an unknown model"
        ),
    },
)
async def invocations(request: Request) -> Response:
    """A prediction, SageMaker style: the model from the target-model header or the default model;
    `text/csv` (a row of features per line, no header) or `application/json` (`instances`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("text/csv", "application/json"):
        raise UnsupportedMediaType(f"send text/csv or application/json, not {content_type or 'no type'!r}")
    name = request.headers.get(TARGET_MODEL_HEADER) or deps.settings(request).default_model
    if name is None:
        raise InvalidInput(f"name the model in {TARGET_MODEL_HEADER}, or set INFERRER_DEFAULT_MODEL")
    return await predict_with(name, None, request)
