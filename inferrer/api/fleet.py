"""Welcome, health, node status and the load-balancer self-test."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from importlib.metadata import version
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request

from inferrer.api import dependencies as deps
from inferrer.errors import InvalidInput, UpstreamUnavailable
from wire.bearer import INFERENCE, MANAGEMENT
from wire.errors import parse_json_object
from wire.inferrer_answers import FleetNotReady, FleetReady, Live, NodeList, SelfTest, Welcome
from wire.json import FastJSONResponse
from wire.modelhost_answers import Draining
from wire.openapi import answers, readiness, request_body

router = APIRouter()
_SELFTEST_BODY = request_body(
    {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    }
)


@router.get("/", responses=answers(Welcome, "The service, its version, how many nodes"))
def welcome(request: Request) -> FastJSONResponse:
    return FastJSONResponse(
        {
            "name": "modelfleet",
            "service": "inferrer",
            "version": version("modelfleet"),
            "nodes": len(deps.nodes(request).urls),
            "docs": "/docs",
        }
    )


@router.get("/health/live", responses=answers(Live, "The process answers"))
def live() -> FastJSONResponse:
    return FastJSONResponse({"live": True})


@router.get("/health/ready", responses=readiness(FleetReady, FleetNotReady, "a node is ready"))
async def ready(request: Request) -> FastJSONResponse:
    """Ready when at least one node is ready to serve the active models."""
    statuses = await deps.nodes(request).statuses()
    ready_nodes = [s.id for s in statuses if s.ready]
    return FastJSONResponse(
        {"ready": bool(ready_nodes), "ready_nodes": ready_nodes},
        status_code=200 if ready_nodes else 503,
    )


@router.get(
    "/api/v1/nodes",
    dependencies=[MANAGEMENT],
    responses=answers(NodeList, "Every node of the topology, as it answered"),
)
async def nodes(request: Request) -> FastJSONResponse:
    statuses = await deps.nodes(request).statuses()
    return FastJSONResponse({"nodes": [dataclasses.asdict(s) for s in statuses]})


@router.post(
    "/api/v1/nodes/{node}/drain",
    dependencies=[MANAGEMENT],
    responses=answers(Draining, "The node's answer: it is draining"),
)
async def drain_node(node: str, request: Request) -> FastJSONResponse:
    """Stop sending new inference to a node before it is removed; in-flight requests finish."""
    return FastJSONResponse(await deps.nodes(request).drain(node))


@router.post(
    "/api/test/sendtomodelhost",
    dependencies=[INFERENCE],
    openapi_extra=_SELFTEST_BODY,
    responses=answers(SelfTest, "Which node answered each item"),
)
async def send_to_modelhost(request: Request) -> FastJSONResponse:
    """Send each item through nginx to a node's ping route; show which node answered each."""
    items = parse_json_object(await request.body()).get("data")
    if not isinstance(items, list) or not items or not all(_is_item(i) for i in items):
        raise InvalidInput(
            'send {"data": ["ONE", "TWO", ...]}: a non-empty list of printable strings (1-200 characters)'
        )
    limit = deps.settings(request).max_selftest_items
    if len(items) > limit:
        raise InvalidInput(f"{len(items)} items exceed the limit of {limit}")
    balancer = deps.balancer(request)
    paths = [f"/api/test/ping/{quote(item, safe='')}" for item in items]
    answers = await asyncio.gather(*(balancer.request("GET", path) for path in paths))
    for item, answer in zip(items, answers, strict=True):
        if 400 <= answer.status_code < 500:  # e.g. "..": the balancer normalises it away
            raise InvalidInput(f"item {item!r} cannot be sent as a path (status {answer.status_code})")
        if answer.status_code != 200:
            raise UpstreamUnavailable(f"the ping of {item!r} failed (status {answer.status_code})")
    results = [orjson.loads(a.content) for a in answers]
    counts = Counter(str(r.get("node")) for r in results)
    return FastJSONResponse({"results": results, "nodes": dict(sorted(counts.items()))})


def _is_item(item: object) -> bool:
    """A ping item travels in a URL path: printable text, no control characters."""
    return isinstance(item, str) and 0 < len(item) <= 200 and item.isprintable()
