"""REST prediction: JSON or CSV in, JSON or CSV out; the active version or a pinned one."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from inferrer.api import dependencies as deps
from inferrer.api.csv_codec import parse_csv_rows, render_csv
from inferrer.api.rest_codec import PREDICT_BODY_SCHEMA, PredictRequest, parse_predict_body
from wire.bearer import Scope
from wire.hot_routes import HotRoute
from wire.inferrer_answers import Prediction
from wire.json import FastJSONResponse
from wire.openapi import answers, request_body

_BODY = request_body(PREDICT_BODY_SCHEMA, csv=True)
# Declared only: the answer is built and sent unvalidated.
_ANSWER = answers(Prediction, "One prediction per row (`Accept: text/csv`: one CSV line per row)", csv=True)


async def predict(request: Request) -> Response:
    """The active version: `{"instances": [[...]]}`, `{"records": [{...}]}` or a text/csv body."""
    return await _predict(request.path_params["name"], None, request)


async def predict_version(request: Request) -> Response:
    """A pinned version, whichever is active."""
    return await _predict(request.path_params["name"], request.path_params["version"], request)


HOT_ROUTES = [
    HotRoute(
        "/api/v1/models/{name}/predict", predict, Scope.INFERENCE, openapi_extra=_BODY, responses=_ANSWER
    ),
    HotRoute(
        "/api/v1/models/{name}/versions/{version}/predict",
        predict_version,
        Scope.INFERENCE,
        openapi_extra=_BODY,
        responses=_ANSWER,
    ),
]


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
