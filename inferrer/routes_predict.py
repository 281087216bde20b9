"""REST prediction: JSON or CSV in, JSON or CSV out; the active version or a pinned one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from inferrer import dependencies as deps
from inferrer.payload import PREDICT_BODY_SCHEMA, PredictRequest, parse_predict_body
from inferrer.tabular import parse_csv_rows, render_csv
from wire.bearer import INFERENCE, Scope, authorize
from wire.inferrer_answers import Prediction
from wire.json import FastJSONResponse
from wire.openapi import answers, request_body

router = APIRouter(prefix="/api/v1/models/{name}")
_BODY = request_body(PREDICT_BODY_SCHEMA, csv=True)
# Declared only: the answer is built and sent unvalidated (the hot routes in HOT_ROUTES serve these paths).
_ANSWER = answers(Prediction, "One prediction per row (`Accept: text/csv`: one CSV line per row)", csv=True)


@router.post("/predict", dependencies=[INFERENCE], openapi_extra=_BODY, responses=_ANSWER)
async def predict(name: str, request: Request) -> Response:
    """The active version: `{"instances": [[...]]}`, `{"records": [{...}]}` or a text/csv body."""
    return await _predict(name, None, request)


@router.post("/versions/{version}/predict", dependencies=[INFERENCE], openapi_extra=_BODY, responses=_ANSWER)
async def predict_version(name: str, version: str, request: Request) -> Response:
    """A pinned version, whichever is active."""
    return await _predict(name, version, request)


async def _predict(name: str, version: str | None, request: Request) -> Response:
    async with deps.admission(request).admit(request.headers):
        return await _answer(name, version, request)


async def _answer(name: str, version: str | None, request: Request) -> Response:
    service = deps.prediction(request)
    manifest = service.resolve(name, version)
    max_rows = deps.settings(request).rows_allowed(manifest.signature.n_features)
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("text/csv"):
        output = request.query_params.get("output", "predict")
        parsed = PredictRequest(parse_csv_rows(raw, manifest.signature, max_rows), output)
    else:
        parsed = parse_predict_body(raw, manifest.signature, max_rows)
    result = await service.predict(manifest, parsed.rows, [parsed.output])
    predictions = result.outputs[parsed.output]
    headers = {"X-Modelhost-Node": result.node, "X-Model-Version": result.version}
    if "text/csv" in request.headers.get("accept", ""):
        return Response(render_csv(predictions), media_type="text/csv", headers=headers)
    body = {"model": name, "version": result.version, "predictions": predictions, "node": result.node}
    return FastJSONResponse(body, headers=headers)


async def predict_hot(request: Request) -> Response:
    authorize(request, Scope.INFERENCE)
    return await _predict(request.path_params["name"], None, request)


async def predict_version_hot(request: Request) -> Response:
    authorize(request, Scope.INFERENCE)
    return await _predict(request.path_params["name"], request.path_params["version"], request)


HOT_ROUTES = [
    ("/api/v1/models/{name}/predict", predict_hot, ["POST"]),
    ("/api/v1/models/{name}/versions/{version}/predict", predict_version_hot, ["POST"]),
]
