"""Model management: deploy, list, inspect, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import WithJsonSchema

from artifacts.manifest import Manifest, RuntimeRequest
from artifacts.names import SEGMENT_SCHEMA
from inferrer.api import dependencies as deps
from inferrer.control.inspection import MAX_SAMPLE_BYTES
from inferrer.control.lifecycle import Upload
from inferrer.errors import PayloadTooLarge, VersionConflict
from wire.bearer import INFERENCE, MANAGEMENT
from wire.inferrer_answers import Deleted, Deployed, ModelList, ModelView, Switched
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals

router = APIRouter(prefix="/api/v1/models")
# Checked by the lifecycle (with its own messages), declared here: one path segment each.
_SEGMENT = WithJsonSchema(SEGMENT_SCHEMA)
_DEPLOY_ANSWERS = {
    **answers(Deployed, "Stored; activated or not, and why", status=201),
    **refusals(
        "Refused: 422 for a file that is not a model this service loads (a .skops file that holds "
        "a fitted estimator of allowed types, an .onnx graph of standard operators with declared "
        "inputs and outputs, or .joblib with trusted=true): only its content tells; "
        "422 for runtime=onnx when the conversion does not verify, or a sample that does not parse; "
        "413 for a file over the upload limit; 409 for a version that exists, or a name an inference "
        "graph has; 401/403 without the management token"
    ),
}


@router.post("", status_code=201, dependencies=[MANAGEMENT], responses=_DEPLOY_ANSWERS)
async def deploy(
    request: Request,
    name: Annotated[str, Form(), _SEGMENT],
    file: Annotated[UploadFile, File()],
    version: Annotated[str | None, Form(), _SEGMENT] = None,
    trusted: Annotated[bool, Form()] = False,
    trusted_types: Annotated[str | None, Form()] = None,
    activate: Annotated[bool, Form()] = True,
    batching: Annotated[bool, Form()] = True,
    runtime: Annotated[RuntimeRequest, Form()] = "auto",
    sample: Annotated[UploadFile | None, File()] = None,
) -> FastJSONResponse:
    """Store a version (atomically), have every node load it, then make it active in one swap.

    `trusted=true` accepts a joblib file (it runs code when loaded); `trusted_types` lists extra
    types a skops file may contain, or operator domains beyond ai.onnx and ai.onnx.ml an ONNX
    graph may use (comma-separated); `activate=false` stages a version that only
    pinned requests use until it is activated; `batching=false` sends each request upstream alone.

    `runtime`: `auto` (the default) compiles a scikit-learn model to ONNX and serves it with ONNX
    Runtime when the graph verifies against the model on probe rows, else keeps scikit-learn (the
    answer's `runtime` says which, and why); `sklearn` never converts; `onnx` refuses (422) a model
    whose conversion does not verify. `sample`: a CSV file (a header row, then rows, as a job's
    input) whose rows the verification probes besides its own.
    """
    if name in deps.graphs(request).names():
        raise VersionConflict(
            f"an inference graph is named {name!r}: the Open Inference Protocol serves both by name"
        )
    limit = deps.settings(request).max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"artifact larger than the limit of {limit} bytes")
    sample_data = await sample.read(MAX_SAMPLE_BYTES + 1) if sample is not None else None
    if sample_data is not None and len(sample_data) > MAX_SAMPLE_BYTES:
        raise PayloadTooLarge(f"sample larger than the limit of {MAX_SAMPLE_BYTES} bytes")
    upload = Upload(
        name=name,
        filename=file.filename or "",
        data=data,
        version=version,
        trusted=trusted,
        trusted_types=tuple(t.strip() for t in (trusted_types or "").split(",") if t.strip()),
        activate=activate,
        batching=batching,
        runtime=runtime,
        sample=sample_data,
    )
    return FastJSONResponse(await deps.lifecycle(request).deploy(upload), status_code=201)


@router.get("", dependencies=[INFERENCE], responses=answers(ModelList, "Every model with a stored version"))
def list_models(request: Request) -> FastJSONResponse:
    repository = deps.repository(request)
    models = [_view(name, active, versions) for name, active, versions in repository.catalogue()]
    return FastJSONResponse({"models": models})


@router.get("/{name}", dependencies=[INFERENCE], responses=answers(ModelView, "The model and its versions"))
def get_model(name: str, request: Request) -> FastJSONResponse:
    repository = deps.repository(request)
    return FastJSONResponse(_view(name, repository.active_version(name), repository.versions(name)))


@router.post(
    "/{name}/versions/{version}/activate",
    dependencies=[MANAGEMENT],
    responses=answers(Switched, "The version is active"),
)
async def activate_version(name: str, version: str, request: Request) -> FastJSONResponse:
    """Switch unpinned traffic to `version` (a roll forward or back), after nodes have it loaded."""
    return FastJSONResponse(await deps.lifecycle(request).activate(name, version))


@router.post(
    "/{name}/rollback",
    dependencies=[MANAGEMENT],
    responses=answers(Switched, "The previous version is active"),
)
async def rollback(name: str, request: Request) -> FastJSONResponse:
    """Activate the version created just before the active one."""
    return FastJSONResponse(await deps.lifecycle(request).rollback(name))


@router.delete(
    "/{name}",
    dependencies=[MANAGEMENT],
    responses={
        **answers(Deleted, "Every version deleted and unloaded"),
        **refusals("404 for an unknown model; 409 while an inference graph uses it (the answer names it)"),
    },
)
async def delete_model(name: str, request: Request) -> FastJSONResponse:
    """Delete every version; nodes unload it once its requests under way have finished."""
    return FastJSONResponse(await deps.lifecycle(request).delete(name))


def _view(name: str, active: str | None, versions: list[Manifest]) -> dict[str, Any]:
    return {
        "name": name,
        "active_version": active,
        "versions": [manifest.model_dump(mode="json") for manifest in versions],
    }
