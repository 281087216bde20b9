"""REST prediction: JSON or CSV in, JSON or CSV out; the active version or a pinned one."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from artifacts.schema import OUTPUTS
from inferrer.api import dependencies as deps
from inferrer.api.csv_codec import parse_csv_rows, render_csv
from inferrer.api.rest_codec import PREDICT_BODY_SCHEMA, PredictRequest, parse_predict_body
from inferrer.errors import InvalidInput
from wire.bearer import Scope
from wire.hot_routes import HotRoute
from wire.inferrer_answers import Prediction
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals, request_body

_OUTPUT_PARAMETER = {
    "name": "output",
    "in": "query",
    "required": False,
    "description": "The output of a text/csv body (a JSON body names it in `output`)",
    "schema": {"type": "string", "enum": OUTPUTS, "default": "predict"},
}
_BODY = {**request_body(PREDICT_BODY_SCHEMA, csv=True), "parameters": [_OUTPUT_PARAMETER]}
# Declared only: the answer is built and sent unvalidated.
_ANSWER = {
    **answers(Prediction, "One prediction per row (`Accept: text/csv`: one CSV line per row)", csv=True),
    **refusals(
        "Refused: 422 for rows the model cannot take (the number of values per row, the feature names "
        "of records or CSV columns, an output it does not offer: its signature, `GET "
        "/api/v1/models/{name}`, says); 413 for more rows than the limit; 404 for an unknown model or "
        "version; 401/403 without the token it needs; 400 for a body that does not parse"
    ),
}


async def predict(request: Request) -> Response:
    """The active version: `{"instances": [[...]]}`, `{"records": [{...}]}` or a text/csv body."""
    return await predict_with(request.path_params["name"], None, request)


async def predict_version(request: Request) -> Response:
    """A pinned version, whichever is active."""
    return await predict_with(request.path_params["name"], request.path_params["version"], request)


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


async def predict_with(name: str, version: str | None, request: Request) -> Response:
    """Admit, parse (JSON, or CSV by content type), predict and answer (JSON, or CSV by Accept): the
    REST routes' path, and the SageMaker contract's."""
    deps.name_model(request, name)
    async with deps.admission(request).admit(request.headers):
        return await _answer(name, version, request)


async def _answer(name: str, version: str | None, request: Request) -> Response:
    service = deps.prediction(request)
    manifest = service.resolve(name, version)
    max_rows = deps.settings(request).rows_allowed(manifest.signature.n_features)
    raw = await request.body()
    output = request.query_params.get("output", "predict") if request.scope["query_string"] else "predict"
    if output not in OUTPUTS:
        raise InvalidInput(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if request.headers.get("content-type", "").startswith("text/csv"):
        parsed = PredictRequest(parse_csv_rows(raw, manifest.signature, max_rows), output)
    else:
        parsed = parse_predict_body(raw, manifest.signature, max_rows)
    result = await service.predict(manifest, parsed.rows, [parsed.output])
    predictions = result.outputs[parsed.output]
    headers = {
        "X-Modelhost-Node": result.node,
        "X-Model-Version": result.version,
        "X-Modelfleet-Gateway": deps.settings(request).gateway_id,
    }
    if "text/csv" in request.headers.get("accept", ""):
        return Response(render_csv(predictions), media_type="text/csv", headers=headers)
    body = {"model": name, "version": result.version, "predictions": predictions, "node": result.node}
    return FastJSONResponse(body, headers=headers)
