"""What the OpenAPI documents declare beyond FastAPI's defaults: the error body every route answers
with, the success body of every route (handlers build their answers as dicts and send them with
orjson, unvalidated, so these declarations are for the documents alone), and the bodies of routes
that read their request raw (for speed) instead of through a model.

Schema-driven fuzzing (schemathesis, in the tests) generates requests from these declarations and
checks every answer against them. The success bodies are in wire/inferrer_answers.py,
wire/v2_answers.py and wire/modelhost_answers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """The body of every error answer (a node adds the `node` that answered)."""

    error: str


class Answer(BaseModel):
    """Base of the declared success bodies: exactly the fields listed (`additionalProperties: false`)."""

    model_config = ConfigDict(extra="forbid")


Responses = dict[int | str, dict[str, Any]]
# A change to the built document, for what the app's settings decide (tokens, limits).
Amendment = Callable[[dict[str, Any]], None]

# Declared on every route: FastAPI's default 422 schema ({"detail": [...]}) is not what we answer.
ERROR_RESPONSES: Responses = {
    "4XX": {"model": ErrorBody, "description": "Refused: bad input, unknown model, no token, overload"},
    "5XX": {"model": ErrorBody, "description": "No node could answer in time"},
}


def refusals(description: str) -> Responses:
    """A route's own 4XX description: what it refuses beyond what its request schema says."""
    return {"4XX": {"model": ErrorBody, "description": description}}


def answers(body: Any, description: str, status: int = 200, csv: bool = False) -> Responses:
    """`responses` of a route whose success is `body` (an Answer, a Manifest, or e.g. `list[...]`);
    `csv`: it answers text/csv instead when the request accepts it."""
    declared: dict[str, Any] = {"model": body, "description": description}
    if csv:
        declared["content"] = {"text/csv": {"schema": {"type": "string"}}}
    return {status: declared}


def readiness(ready: type[Answer], not_ready: type[Answer], when: str) -> Responses:
    """`responses` of a health route that tells readiness by its status: 200 when ready, else 503
    with `"ready": false` in a body of its own (not an ErrorBody)."""
    return {
        200: {"model": ready, "description": f"Ready: {when}"},
        503: {"model": not_ready, "description": 'Not ready: the same body with `"ready": false`'},
    }


def request_body(json_schema: dict[str, Any], csv: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its body itself."""
    content: dict[str, Any] = {"application/json": {"schema": json_schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def amend_document(app: FastAPI, *amendments: Amendment) -> None:
    """Apply `amendments` to the app's document once, when FastAPI first builds it: the parts that
    depend on the settings (which token a route needs, configured limits), so that the document
    describes what this server, as configured, accepts."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI keeps it in app.openapi_schema: amended once
        for amend in amendments:
            amend(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
