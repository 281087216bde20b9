"""The node's HTTP API: status, health, the ping self-test, predict, and internal model control.

Only health (and /metrics) is open. Everything else needs the fleet's management token: the
inferrer sends it on every call, through nginx or directly, so a caller that reaches a node's port
or nginx's can neither predict nor make the node load a model without it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from artifacts.manifest import Manifest
from modelhost.errors import InvalidInput, NodeDraining
from modelhost.store import ModelStore
from modelhost.sync import Reconciler
from wire.bearer import MANAGEMENT, Scope
from wire.errors import parse_json_object
from wire.hot_routes import HotRoute
from wire.json import FastJSONResponse
from wire.modelhost_answers import (
    Draining,
    ModelLoaded,
    ModelUnloaded,
    NodeLive,
    NodeNotReady,
    NodePrediction,
    NodeReady,
    NodeStatus,
    Pong,
)
from wire.openapi import answers, readiness, request_body

health = APIRouter()
router = APIRouter(dependencies=[MANAGEMENT])

_CELL_TYPES = ["number", "string", "boolean", "null"]
_PREDICT_BODY = request_body(
    {
        "type": "object",
        "required": ["version", "sha256"],
        "properties": {
            "version": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            # Numbers, or, with the fitted feature names in `columns`, any JSON values (text columns).
            "instances": {"type": "array", "items": {"type": "array", "items": {"type": _CELL_TYPES}}},
            "columns": {"type": "array", "items": {"type": "string"}},
            "outputs": {"type": "array", "items": {"type": "string"}},
        },
    }
)
# Model control is for the inferrer alone: it sends the fleet's management token.
internal = APIRouter(prefix="/internal/v1", dependencies=[MANAGEMENT])


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


def _reconciler(request: Request) -> Reconciler:
    reconciler: Reconciler = request.app.state.reconciler
    return reconciler


@router.get("/", responses=answers(NodeStatus, "Readiness, requests in flight, loaded models"))
def status(request: Request) -> FastJSONResponse:
    store = _store(request)
    readiness = _reconciler(request).readiness
    return FastJSONResponse(
        {
            "service": "modelhost",
            "node": store.node,
            "ready": readiness.ready,
            "draining": readiness.draining,
            "in_flight": store.in_flight,
            "models": store.status(),
        }
    )


@health.get("/health/live", responses=answers(NodeLive, "The process answers"))
def live(request: Request) -> FastJSONResponse:
    return FastJSONResponse({"live": True, "node": _store(request).node})


@health.get(
    "/health/ready",
    responses=readiness(NodeReady, NodeNotReady, "synced with the inferrer, every active model loaded"),
)
def ready(request: Request) -> FastJSONResponse:
    readiness = _reconciler(request).readiness
    body = {"ready": readiness.ready, "node": _store(request).node, "reason": readiness.reason}
    return FastJSONResponse(body, status_code=200 if readiness.ready else 503)


@router.get("/api/test/ping/{item}", responses=answers(Pong, "This node answered"))
def ping(item: str, request: Request) -> FastJSONResponse:
    return FastJSONResponse({"item": item, "node": _store(request).node})


async def predict(request: Request) -> Response:
    """Body: {"version": "2", "sha256": "...", "instances": [[...]], "outputs": ["predict",
    "predict_proba"]}, and "columns": [...] (the fitted feature names) to predict on a DataFrame of
    mixed values. `sha256` names the artifact the inferrer means by that version: the node predicts
    with exactly that one (a version deleted and deployed again under the same number is another)."""
    name = request.path_params["name"]
    reconciler = _reconciler(request)
    store = _store(request)
    if reconciler.readiness.draining:
        raise NodeDraining(f"{store.node} is draining")
    body = parse_json_object(await request.body())
    version = body.get("version")
    sha256 = body.get("sha256")
    outputs = body.get("outputs", ["predict"])
    if not isinstance(version, str) or not isinstance(sha256, str):
        raise InvalidInput('"version" and "sha256" (strings) are required')
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise InvalidInput('"outputs" must be a list of output names')
    columns = body.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise InvalidInput('"columns" must be a list of feature names')
    await reconciler.ensure_available(name, version, sha256)
    results = await store.predict(name, version, sha256, body.get("instances"), outputs, columns)
    return FastJSONResponse({"model": name, "version": version, "outputs": results, "node": store.node})


# The answer is declared only: it is built and sent unvalidated.
HOT_ROUTES = [
    HotRoute(
        "/api/v1/models/{name}/predict",
        predict,
        Scope.MANAGEMENT,
        openapi_extra=_PREDICT_BODY,
        responses=answers(NodePrediction, "One list per requested output"),
    )
]


@internal.get("/models", responses=answers(list[Manifest], "The manifest of every loaded version"))
def loaded_models(request: Request) -> FastJSONResponse:
    return FastJSONResponse([m.model_dump(mode="json") for m in _store(request).loaded()])


@internal.post("/models/load", responses=answers(ModelLoaded, "Loaded (or was already)"))
async def load_model(manifest: Manifest, request: Request) -> FastJSONResponse:
    await _reconciler(request).load(manifest)
    return FastJSONResponse({**_summary(manifest), "node": _store(request).node})


@internal.post("/drain", responses=answers(Draining, "Not ready from now on"))
def drain(request: Request) -> FastJSONResponse:
    readiness = _reconciler(request).readiness
    readiness.drain()
    store = _store(request)
    return FastJSONResponse({"node": store.node, "draining": True, "in_flight": store.in_flight})


@internal.delete(
    "/models/{name}", responses=answers(ModelUnloaded, "The versions unloaded (none if not loaded)")
)
async def unload_model(name: str, request: Request) -> FastJSONResponse:
    versions = await _reconciler(request).unload(name)
    return FastJSONResponse({"model": name, "unloaded": versions, "node": _store(request).node})


def _summary(manifest: Manifest) -> dict[str, Any]:
    return {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256}
