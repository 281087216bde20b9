"""What the OpenAPI documents declare beyond FastAPI's defaults: the error body every route answers
with, and the bodies of routes that read their request raw (for speed) instead of through a model.

Schema-driven fuzzing (schemathesis, in the tests) generates requests from these declarations.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str


# Declared on every route: FastAPI's default 422 schema ({"detail": [...]}) is not what we answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: bad input, unknown model, no token, overload"},
    "5XX": {"model": ErrorBody, "description": "No node could answer in time"},
}


def request_body(json_schema: dict[str, Any], csv: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its body itself."""
    content: dict[str, Any] = {"application/json": {"schema": json_schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}
