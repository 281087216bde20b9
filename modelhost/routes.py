"""The node's HTTP API: status, health, the ping self-test, predict, and internal model control.

Only health (and /metrics) is open. Everything else needs the fleet's management token: the
inferrer sends it on every call, through nginx or directly, so a caller that reaches a node's port
or nginx's can neither predict nor make the node load a model without it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from artifacts.manifest import Manifest
from modelhost.batch_worker import BatchWorker
from modelhost.errors import NodeDraining
from modelhost.store import ModelStore
from modelhost.sync import Reconciler
from wire import tracing
from wire.bearer import MANAGEMENT, Scope
from wire.errors import parse_body
from wire.hot_routes import HotRoute
from wire.json import FastJSONResponse
from wire.modelhost_answers import (
    Draining,
    NodeLive,
    NodeNotReady,
    NodeReady,
    NodeStatus,
    Pong,
)
from wire.node_calls import NodePrediction, SyncAnswer, SyncRequest, predict_body, sync_request
from wire.openapi import answers, readiness, refusals, request_body
from wire.partition_calls import PartitionCall, PartitionDone, partition_call

health = APIRouter()
router = APIRouter(dependencies=[MANAGEMENT])

_PREDICT_BODY = request_body(predict_body.json_schema())
# Model control is for the inferrer alone: it sends the fleet's management token.
internal = APIRouter(prefix="/internal/v1", dependencies=[MANAGEMENT])


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


def _in_flight(request: Request) -> int:
    """Predictions and job partitions under way: a drained node stops once none is left."""
    worker: BatchWorker = request.app.state.batch_worker
    return _store(request).in_flight + worker.running


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
            "in_flight": _in_flight(request),
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
    """Predict with the artifact the body names (wire.node_calls.NodePredictBody)."""
    name = request.path_params["name"]
    reconciler = _reconciler(request)
    store = _store(request)
    if reconciler.readiness.draining:
        raise NodeDraining(f"{store.node} is draining")
    request.app.state.batch_worker.online_served()  # a batch job's partitions rest meanwhile
    with tracing.span("parse"):
        body = parse_body(predict_body, await request.body())
    version, sha256 = body["version"], body["sha256"]
    outputs = body.get("outputs", ["predict"])
    await reconciler.ensure_available(name, version, sha256)
    with tracing.span("predict", {"modelfleet.model": name, "modelfleet.version": version}):
        results = await store.predict(name, version, sha256, body["instances"], outputs, body.get("columns"))
    answer: NodePrediction = {
        "model": name,
        "version": version,
        "outputs": results,
        "node": store.node,
        "predict_s": store.predict_seconds((name, version)),
    }
    with tracing.span("render"):
        return FastJSONResponse(answer)


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


@internal.post("/sync", responses=answers(SyncAnswer, "Converged: what this node holds, what failed"))
async def sync(changes: SyncRequest, request: Request) -> Response:
    """Converge to the inferrer's desired state now, warming and releasing what `changes` say."""
    # FastAPI validates (and documents) `changes` laxly: 0 passes for false, a number for a date.
    # Checked again as the document's JSON Schema reads, strictly.
    changes = parse_body(sync_request, await request.body())
    answer = await _reconciler(request).sync(changes)
    return Response(answer.model_dump_json(), media_type="application/json")


@internal.post(
    "/partitions",
    responses={
        **answers(PartitionDone, "The partition's output part is written whole"),
        **refusals(
            "422: a location outside the data directory, or bad rows with on_bad_rows fail (only the "
            "file tells); 404: no such input file, or the model's version is not that artifact"
        ),
    },
)
async def partition(call: PartitionCall, request: Request) -> Response:
    """Run one partition of a batch job (wire.partition_calls): read, predict, write."""
    call = parse_body(partition_call, await request.body())
    store, key = _store(request), (call.model, call.version)
    await _reconciler(request).ensure_available(call.model, call.version, call.sha256)
    worker: BatchWorker = request.app.state.batch_worker
    work = await worker.run(call, store.manifest(key))
    store.count_predicted(key, work.predict_calls)
    return Response(work.done.model_dump_json(), media_type="application/json")


@internal.post("/drain", responses=answers(Draining, "Not ready from now on"))
def drain(request: Request) -> FastJSONResponse:
    readiness = _reconciler(request).readiness
    readiness.drain()
    store = _store(request)
    return FastJSONResponse({"node": store.node, "draining": True, "in_flight": _in_flight(request)})
