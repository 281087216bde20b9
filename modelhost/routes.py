"""The node's HTTP API: status, health, the ping self-test, predict, and internal model control."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from artifacts.manifest import Manifest
from modelhost.errors import ModelNotLoaded, NodeDraining
from modelhost.store import ModelStore
from modelhost.sync import Reconciler
from wire.errors import parse_json_object
from wire.json import FastJSONResponse

router = APIRouter()


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


def _reconciler(request: Request) -> Reconciler:
    reconciler: Reconciler = request.app.state.reconciler
    return reconciler


@router.get("/")
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
            "models": [_summary(m) for m in store.loaded()],
        }
    )


@router.get("/health/live")
def live(request: Request) -> FastJSONResponse:
    return FastJSONResponse({"live": True, "node": _store(request).node})


@router.get("/health/ready")
def ready(request: Request) -> FastJSONResponse:
    readiness = _reconciler(request).readiness
    body = {"ready": readiness.ready, "node": _store(request).node, "reason": readiness.reason}
    return FastJSONResponse(body, status_code=200 if readiness.ready else 503)


@router.get("/api/test/ping/{item}")
def ping(item: str, request: Request) -> FastJSONResponse:
    return FastJSONResponse({"item": item, "node": _store(request).node})


@router.post("/api/v1/models/{name}/predict")
async def predict(name: str, request: Request) -> Response:
    if _reconciler(request).readiness.draining:
        raise NodeDraining(f"{_store(request).node} is draining")
    body = parse_json_object(await request.body())
    store = _store(request)
    version = body.get("version") or _latest_loaded_version(store, name)
    output = body.get("output", "predict")
    predictions = await store.predict(name, str(version), body.get("instances"), str(output))
    return FastJSONResponse(
        {"model": name, "version": version, "predictions": predictions, "node": store.node}
    )


@router.get("/internal/v1/models")
def loaded_models(request: Request) -> FastJSONResponse:
    return FastJSONResponse([m.model_dump(mode="json") for m in _store(request).loaded()])


@router.post("/internal/v1/models/load")
async def load_model(manifest: Manifest, request: Request) -> FastJSONResponse:
    await _reconciler(request).load(manifest)
    return FastJSONResponse({**_summary(manifest), "node": _store(request).node})


@router.post("/internal/v1/drain")
def drain(request: Request) -> FastJSONResponse:
    readiness = _reconciler(request).readiness
    readiness.drain()
    store = _store(request)
    return FastJSONResponse({"node": store.node, "draining": True, "in_flight": store.in_flight})


@router.delete("/internal/v1/models/{name}")
async def unload_model(name: str, request: Request) -> FastJSONResponse:
    versions = await _reconciler(request).unload(name)
    return FastJSONResponse({"model": name, "unloaded": versions, "node": _store(request).node})


def _summary(manifest: Manifest) -> dict[str, Any]:
    return {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256}


def _latest_loaded_version(store: ModelStore, name: str) -> str:
    versions = [m for m in store.loaded() if m.name == name]
    if not versions:
        raise ModelNotLoaded(f"model {name!r} is not loaded on {store.node}")
    return max(versions, key=lambda m: m.created).version
