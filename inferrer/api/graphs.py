"""Inference graphs: deploy (YAML or JSON; checked whole, or only planned with `dry_run`), list,
inspect, activate a version, delete (management scope); predict (inference scope)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from artifacts.manifest import Manifest
from artifacts.names import Segment
from artifacts.schema import ModelSchema
from inferrer.api import dependencies as deps
from inferrer.api.rest_codec import PREDICT_BODY_SCHEMA
from inferrer.api.yaml_codec import YAML_TYPES, is_yaml, read_yaml_mapping
from inferrer.dataplane.rows import read_rows
from inferrer.errors import InvalidInput, PayloadTooLarge
from inferrer.graphs.deployed import GraphRecord
from inferrer.graphs.traversal import every_stage
from wire.bearer import INFERENCE, MANAGEMENT
from wire.errors import parse_json_object
from wire.graph_answers import GraphDeleted, GraphPlan, GraphPrediction, GraphVersion, GraphView
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals

router = APIRouter(prefix="/api/v1/graphs")
MAX_DOCUMENT_BYTES = 256 * 1024  # a hundred steps in YAML take a tenth of it
GraphName = Annotated[Segment, Path()]
_DOCUMENT = {"type": "object", "description": "An InferenceGraph (apiVersion modelfleet/v1): see the README"}
_DEPLOY_BODY = {
    "requestBody": {
        "required": True,
        "content": {media: {"schema": _DOCUMENT} for media in ("application/json", *YAML_TYPES)},
    }
}
_PREDICT_PROPERTIES = {k: v for k, v in PREDICT_BODY_SCHEMA["properties"].items() if k != "output"}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    **PREDICT_BODY_SCHEMA,
                    "properties": {**_PREDICT_PROPERTIES, "trace": {"type": "boolean", "default": False}},
                }
            }
        },
    }
}


async def _document(request: Request) -> dict[str, Any]:
    """The body, JSON or YAML (read in a worker thread: the event loop serves predictions)."""
    raw = await request.body()
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"a graph document has at most {MAX_DOCUMENT_BYTES} bytes")
    if is_yaml(request.headers.get("content-type", "")):
        return await asyncio.to_thread(read_yaml_mapping, raw)
    return parse_json_object(raw)


@router.post(
    "",
    dependencies=[MANAGEMENT],
    openapi_extra=_DEPLOY_BODY,
    responses={
        **answers(
            GraphPlan,
            "The plan: deployed as a new version (`version`), active at once; or, with `dry_run`, "
            "with the nodes that have each model ready (`nodes_ready`) and nothing stored (`version` null)",
        ),
        **refusals(
            "422 with every problem of the graph at once, each with its path in the document "
            "(`problems`): unknown models or versions, an output a model does not offer, widths that "
            "do not match, forward references, unused steps, duplicate names, a switch without a "
            "default; 400 for a body that does not parse; 413 for a document over 256 KiB"
        ),
    },
)
async def deploy_graph(request: Request, dry_run: Annotated[bool, Query()] = False) -> FastJSONResponse:
    """Check the graph against the models as deployed; store it (unless `dry_run`)."""
    document = await _document(request)
    graphs = deps.graphs(request)
    if not dry_run:
        return FastJSONResponse((await graphs.deploy(document)).model_dump(mode="json"))
    plan = await asyncio.to_thread(graphs.check, document)
    statuses = await deps.nodes(request).statuses()
    for stage in every_stage(plan.stages):
        for call in stage.calls:
            call.nodes_ready = sorted(
                s.id
                for s in statuses
                if s.ready
                and any(m.get("name") == call.model and m.get("version") == call.version for m in s.models)
            )
    return FastJSONResponse(plan.model_dump(mode="json"))


@router.get("", dependencies=[INFERENCE], responses=answers(list[str], "The names of every graph"))
async def list_graphs(request: Request) -> FastJSONResponse:
    await deps.graphs(request).refresh()
    return FastJSONResponse(deps.graphs(request).names())


@router.get("/{name}", dependencies=[INFERENCE], responses=answers(GraphView, "The graph and its versions"))
async def get_graph(name: GraphName, request: Request) -> FastJSONResponse:
    records = await deps.graphs(request).versions(name)
    active = next((r.version for r in records if r.active), records[-1].version)
    view = GraphView(graph=name, active_version=active, versions=[_version(r) for r in records])
    return FastJSONResponse(view.model_dump(mode="json"))


@router.post(
    "/{name}/versions/{version}/activate",
    dependencies=[MANAGEMENT],
    responses=answers(GraphPlan, "The version is active: its plan"),
)
async def activate_graph(
    name: GraphName, version: Annotated[Segment, Path()], request: Request
) -> FastJSONResponse:
    """Serve an earlier (or later) version of the graph: a roll back or forward."""
    return FastJSONResponse((await deps.graphs(request).activate(name, version)).model_dump(mode="json"))


@router.delete("/{name}", dependencies=[MANAGEMENT], responses=answers(GraphDeleted, "Every version deleted"))
async def delete_graph(name: GraphName, request: Request) -> FastJSONResponse:
    """Delete every version; the models it used may be deleted afterwards."""
    deleted = await deps.graphs(request).delete(name)
    return FastJSONResponse(GraphDeleted(graph=name, deleted_versions=deleted).model_dump(mode="json"))


_PREDICT_ANSWERS = {
    **answers(GraphPrediction, "The graph's answer, one per row; `branches`: each split's branch taken"),
    **refusals(
        "404 for an unknown graph or version; 422 for rows the graph's first model cannot take; a "
        "failed step answers its own status with the step and the model named (`step`, `model`)"
    ),
}


@router.post(
    "/{name}/predict", dependencies=[INFERENCE], openapi_extra=_PREDICT_BODY, responses=_PREDICT_ANSWERS
)
async def predict_graph(name: GraphName, request: Request) -> FastJSONResponse:
    """Run the active version on `instances` or `records`; `trace`: each step's model, node and ms."""
    return await _predict(name, None, request)


@router.post(
    "/{name}/versions/{version}/predict",
    dependencies=[INFERENCE],
    openapi_extra=_PREDICT_BODY,
    responses=_PREDICT_ANSWERS,
)
async def predict_graph_version(
    name: GraphName, version: Annotated[Segment, Path()], request: Request
) -> FastJSONResponse:
    """Run one version of the graph, whichever is active."""
    return await _predict(name, version, request)


async def _predict(name: str, version: str | None, request: Request) -> FastJSONResponse:
    async with deps.admission(request).admit(request.headers):
        graphs = deps.graphs(request)
        graph = await graphs.deployed(name, version)
        body = parse_json_object(await request.body())
        unknown = set(body) - {"instances", "records", "trace"}
        if unknown:
            raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
        trace = body.get("trace", False)
        if not isinstance(trace, bool):
            raise InvalidInput('"trace" must be true or false')
        signature = _request_signature(graphs.request_reader(graph), body)
        rows = read_rows(body, signature, deps.settings(request).rows_allowed(signature.n_features))
        answer = await graphs.predict(graph, rows)
        # Declared only (GraphPrediction): built and sent unvalidated, as a model's prediction is.
        result: dict[str, Any] = {
            "graph": name,
            "version": graph.record.version,
            "predictions": answer.predictions,
            "branches": answer.branches,
        }
        if trace:
            result["trace"] = [step.model_dump() for step in answer.trace]
        return FastJSONResponse(result)


def _request_signature(reader: Manifest | None, body: dict[str, Any]) -> ModelSchema:
    """What the request's rows are read against: the first model that reads the request by itself
    (its feature count, and its feature names for `records`); rows of any width where none does."""
    if reader is not None:
        return reader.signature
    instances = body.get("instances")
    first = instances[0] if isinstance(instances, list) and instances else None
    return ModelSchema(n_features=max(len(first), 1) if isinstance(first, list) else 1, outputs=[])


def _version(record: GraphRecord) -> GraphVersion:
    return GraphVersion(
        graph=record.name,
        version=record.version,
        created=record.created,
        active=record.active,
        document=record.document,
        pins=record.pins,
    )
