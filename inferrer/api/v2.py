"""The Open Inference Protocol V2 (KServe / Triton), with the model repository extension.

Inference goes the same way as REST predict: checked here, then through nginx to a node. Health
answers carry the truth in the status code; errors are {"error": "..."} with 400 for bad requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version

from fastapi import APIRouter, Request

from inferrer.api import dependencies as deps
from inferrer.api.v2_codec import INFER_BODY_SCHEMA, decode_infer_request, encode_outputs, model_metadata
from inferrer.errors import (
    GraphNotFound,
    GraphStepFailed,
    InferrerError,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
)
from wire.bearer import INFERENCE, MANAGEMENT, Scope
from wire.hot_routes import HotRoute
from wire.inferrer_answers import Live
from wire.json import FastJSONResponse
from wire.openapi import answers, readiness, refusals, request_body
from wire.v2_answers import (
    V2InferResponse,
    V2ModelLoaded,
    V2ModelMetadata,
    V2ModelNotReady,
    V2ModelReady,
    V2ModelUnloaded,
    V2RepositoryIndex,
    V2ServerMetadata,
    V2ServerNotReady,
    V2ServerReady,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])
_INFER_BODY = request_body(INFER_BODY_SCHEMA)
_METADATA = answers(V2ModelMetadata, "The model's versions, input and output tensors")
_MODEL_READY = readiness(V2ModelReady, V2ModelNotReady, "the version exists and a node is ready")
# Declared only: the answer is built and sent unvalidated.
_INFERRED = {
    **answers(V2InferResponse, "One output tensor per requested output"),
    **refusals(
        "Refused: 400 for tensors the model cannot take (it takes one [rows, n_features] tensor or one "
        "per fitted feature: its metadata, `GET /v2/models/{name}`, says), an output it does not offer, "
        "data that does not hold as many values of the datatype as the shape says, or a body that "
        "does not parse; 413 for more rows than the limit; 404 for an unknown model or version; "
        "an inference graph's name serves the graph (its rows as its first model reads them; one "
        "output tensor, named after the step that answers); "
        "401/403 without the token it needs"
    ),
}


class BadRequest(InferrerError):
    status_code = 400


@asynccontextmanager
async def _v2_errors() -> AsyncIterator[None]:
    """The protocol answers 400 where the REST API says 422 (invalid input)."""
    try:
        yield
    except InvalidInput as exc:
        raise BadRequest(exc.message) from None
    except GraphStepFailed as exc:
        if exc.status_code != InvalidInput.status_code:
            raise
        raise BadRequest(exc.message) from None


@router.get("", responses=answers(V2ServerMetadata, "The server and its extensions"))
def server_metadata() -> FastJSONResponse:
    return FastJSONResponse(
        {"name": "modelfleet", "version": package_version("modelfleet"), "extensions": ["model_repository"]}
    )


@router.get("/health/live", responses=answers(Live, "The process answers"))
def server_live() -> FastJSONResponse:
    return FastJSONResponse({"live": True})


@router.get("/health/ready", responses=readiness(V2ServerReady, V2ServerNotReady, "a node is ready"))
async def server_ready(request: Request) -> FastJSONResponse:
    ready = bool(await deps.nodes(request).ready_nodes())
    return FastJSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{name}", dependencies=[INFERENCE], responses=_METADATA)
@router.get("/models/{name}/versions/{version}", dependencies=[INFERENCE], responses=_METADATA)
def model_meta(name: str, request: Request, version: str | None = None) -> FastJSONResponse:
    repository = deps.repository(request)
    manifest = repository.get(name, version)
    versions = [m.version for m in repository.versions_if_any(name)]
    return FastJSONResponse(model_metadata(manifest, versions).model_dump())


@router.get("/models/{name}/ready", dependencies=[INFERENCE], responses=_MODEL_READY)
@router.get("/models/{name}/versions/{version}/ready", dependencies=[INFERENCE], responses=_MODEL_READY)
async def model_ready(name: str, request: Request, version: str | None = None) -> FastJSONResponse:
    """200 when the version exists and a ready node serves it (loading it on demand if needed)."""
    manifest = deps.repository(request).get(name, version)
    ready = bool(await deps.nodes(request).ready_nodes())
    body = {"name": name, "version": manifest.version, "ready": ready}
    return FastJSONResponse(body, status_code=200 if ready else 503)


async def infer(request: Request) -> FastJSONResponse:
    """Inference on the active version (or the pinned one): tensors in, tensors out."""
    name, version = request.path_params["name"], request.path_params.get("version")
    deps.name_model(request, name)
    async with deps.admission(request).admit(request.headers):
        return await _infer(name, request, version)


def _header_length(request: Request) -> int | None:
    header = request.headers.get("inference-header-content-length")
    try:
        return int(header) if header is not None else None
    except ValueError:
        raise MalformedRequest("Inference-Header-Content-Length must be an integer") from None


async def _infer(name: str, request: Request, version: str | None) -> FastJSONResponse:
    service = deps.prediction(request)
    try:
        manifest = service.resolve(name, version)
    except ModelNotFound:
        if name in service.repository.names():
            raise  # the model is there, its version is not
        return await _infer_graph(name, request, version)
    async with _v2_errors():
        max_rows = deps.settings(request).rows_allowed(manifest.signature.n_features)
        decoded = decode_infer_request(await request.body(), _header_length(request), manifest, max_rows)
        result = await service.predict(manifest, decoded.rows, decoded.outputs)
    body = {"model_name": name, "model_version": result.version, "outputs": encode_outputs(result.outputs)}
    if decoded.id is not None:
        body["id"] = decoded.id
    gateway = deps.settings(request).gateway_id
    return FastJSONResponse(body, headers={"X-Modelhost-Node": result.node, "X-Modelfleet-Gateway": gateway})


async def _infer_graph(name: str, request: Request, version: str | None) -> FastJSONResponse:
    """An inference graph by its name: its request read as its first model reads it, its answer
    one output tensor named after the step that answers."""
    graphs = deps.graphs(request)
    try:
        graph = await graphs.deployed(name, version)
    except GraphNotFound as exc:
        raise ModelNotFound(exc.message if version else f"no model or graph named {name!r}") from None
    reader = graphs.request_reader(graph)
    if reader is None:
        raise BadRequest(
            f"graph {name!r} sends its request to no model by itself: use its REST predict route"
        )
    async with _v2_errors():
        max_rows = deps.settings(request).rows_allowed(reader.signature.n_features)
        decoded = decode_infer_request(await request.body(), _header_length(request), reader, max_rows)
        if decoded.outputs_named and decoded.outputs != [graph.output]:
            raise InvalidInput(f"graph {name!r} answers one output, {graph.output!r}")
        answer = await graphs.predict(graph, decoded.rows)
    outputs = encode_outputs({graph.output: answer.predictions})
    body = {"model_name": name, "model_version": graph.record.version, "outputs": outputs}
    if decoded.id is not None:
        body["id"] = decoded.id
    return FastJSONResponse(body, headers={"X-Modelfleet-Gateway": deps.settings(request).gateway_id})


@router.post(
    "/repository/index",
    dependencies=[INFERENCE],
    responses=answers(V2RepositoryIndex, "Every stored version and its state"),
)
async def repository_index(request: Request) -> FastJSONResponse:
    """Every stored version; READY where a node has it loaded, else loaded on its first request."""
    loaded = {
        (m["name"], m["version"]) for status in await deps.nodes(request).statuses() for m in status.models
    }
    index = []
    for manifest in deps.repository(request).all_versions():
        entry = {"name": manifest.name, "version": manifest.version, "state": "READY"}
        if manifest.key not in loaded:
            entry.update(state="UNAVAILABLE", reason="not loaded on any node: loads on its next request")
        index.append(entry)
    return FastJSONResponse(index)


@router.post(
    "/repository/models/{name}/load",
    dependencies=[MANAGEMENT],
    responses=answers(V2ModelLoaded, "The active version is loaded on these nodes"),
)
async def repository_load(name: str, request: Request) -> FastJSONResponse:
    return FastJSONResponse(await deps.lifecycle(request).warm(name))


@router.post(
    "/repository/models/{name}/unload",
    dependencies=[MANAGEMENT],
    responses=answers(V2ModelUnloaded, "The nodes that released it"),
)
async def repository_unload(name: str, request: Request) -> FastJSONResponse:
    """Nodes release the model's memory; it stays deployed and loads again on its next request."""
    return FastJSONResponse(await deps.lifecycle(request).release(name))


HOT_ROUTES = [
    HotRoute(path, infer, Scope.INFERENCE, openapi_extra=_INFER_BODY, responses=_INFERRED)
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
]
