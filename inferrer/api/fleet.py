"""Welcome, health, node status and the load-balancer self-test."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import Counter
from importlib.metadata import version
from typing import Any
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
from wire.openapi import Amendment, answers, readiness, request_body

router = APIRouter()
SELFTEST_PATH = "/api/test/sendtomodelhost"
# A self-test item travels as a path segment through nginx to a node: URL-safe (unreserved)
# characters, not "." or ".." (which a URL path normalises away), at most 200.
_ITEM_PATTERN = r"^(?:[A-Za-z0-9._~-]*[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.{3,})$"
_ITEM = re.compile(_ITEM_PATTERN)
_ITEM_MAX_LENGTH = 200
_SELFTEST_BODY = request_body(
    {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "minItems": 1,  # at most max_selftest_items: see document_selftest_limit
                "items": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": _ITEM_MAX_LENGTH,
                    "pattern": _ITEM_PATTERN,
                },
            }
        },
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
    ready_nodes = await deps.nodes(request).ready_nodes()
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
    SELFTEST_PATH,
    dependencies=[INFERENCE],
    openapi_extra=_SELFTEST_BODY,
    responses=answers(SelfTest, "Which node answered each item"),
)
async def send_to_modelhost(request: Request) -> FastJSONResponse:
    """Send each item through nginx to a node's ping route; show which node answered each."""
    items = parse_json_object(await request.body()).get("data")
    if not isinstance(items, list) or not items or not all(_is_item(i) for i in items):
        raise InvalidInput(
            'send {"data": ["ONE", "TWO", ...]}: a non-empty list of strings of 1-200 of '
            "A-Z a-z 0-9 . _ ~ - (not '.' or '..')"
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
    """A ping item travels in a URL path, as one segment that nothing rewrites."""
    return isinstance(item, str) and len(item) <= _ITEM_MAX_LENGTH and bool(_ITEM.fullmatch(item))


def document_selftest_limit(limit: int) -> Amendment:
    """The configured most items (INFERRER_MAX_SELFTEST_ITEMS), in the self-test's body schema."""

    def amend(document: dict[str, Any]) -> None:
        body = document["paths"][SELFTEST_PATH]["post"]["requestBody"]
        body["content"]["application/json"]["schema"]["properties"]["data"]["maxItems"] = limit

    return amend
