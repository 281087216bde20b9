"""Checks an answer against the schema its app's own OpenAPI document declares for its status and
media type, as schemathesis's response_schema_conformance does (with jsonschema_rs, which it uses)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs


def declared_schema(
    document: dict[str, Any], method: str, path: str, status: int, media_type: str = "application/json"
) -> dict[str, Any]:
    """The schema declared for `status` (an exact code before its range, as OpenAPI says); `path` is
    the document's template, e.g. /api/v1/models/{name}."""
    responses = document["paths"][path][method.lower()]["responses"]
    response = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    schema: dict[str, Any] = response["content"][media_type]["schema"]
    return schema


def assert_declared(document: dict[str, Any], method: str, path: str, response: httpx.Response) -> Any:
    """The answer's body (parsed when JSON) once it conforms to what the document declares."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    body = response.json() if media_type == "application/json" else response.text
    schema = declared_schema(document, method, path, response.status_code, media_type)
    validator = jsonschema_rs.validator_for(
        {**schema, "components": document["components"]}, validate_formats=True
    )
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, (
        f"{method} {response.url} {response.status_code} {media_type}: {body!r}\n"
        f"breaks the schema declared for it: {errors}"
    )
    return body
