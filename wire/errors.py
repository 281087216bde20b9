"""The error base every service builds on, its one handler, and the one body shape."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from wire.json import error_response

T = TypeVar("T")
ErrorHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


class ServiceError(Exception):
    """An answer to give the client: subclasses only name the case and the status."""

    status_code = 500
    headers: ClassVar[dict[str, str]] = {}  # e.g. WWW-Authenticate, Retry-After

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(ServiceError):
    status_code = 400


class InvalidRequest(ServiceError):
    """A well-formed body that breaks the route's declared type."""

    status_code = 422


def parse_body(adapter: TypeAdapter[T], raw: bytes) -> T:
    """Parse and validate a body against its wire type: 400 when it is no JSON, 422 naming each
    field that breaks the type."""
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise MalformedRequest(f"malformed JSON body: {exc.errors()[0]['msg']}") from None
        raise InvalidRequest(f"invalid request: {describe(exc.errors())}") from None


def describe(errors: Any) -> str:
    """Pydantic's (or FastAPI's) validation errors, one `field: problem` each."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body once, with orjson; it must be a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequest("the body must be a JSON object")
    return body


def service_error_handler(count: Callable[[str], None], **extra: str) -> ErrorHandler:
    """The handler for ServiceError: counts it by name; `extra` fields (the node id) go in every body."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        count(type(exc).__name__)
        return error_response(exc.message, exc.status_code, exc.headers, **extra)

    return handle


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own refusals (unknown route, wrong method, unparsable body) in the
    same body shape as every other error."""
    assert isinstance(exc, StarletteHTTPException)
    return error_response(str(exc.detail), exc.status_code, dict(exc.headers or {}))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's request validation errors in the same body shape, naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    return error_response(f"invalid request: {describe(exc.errors())}", 422)
