"""The error base every service builds on, its one handler, and the one body shape."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

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

    def body_fields(self) -> dict[str, Any]:
        """Fields the error body carries beyond `error` (and a node's `node`)."""
        return {}


class ModelUnavailableHere(ServiceError):
    """A node cannot serve one model (or one job's storage) now, while the node itself is fine: the
    artifact cannot be fetched, the memory budget has no room, the version is not loaded here.

    Answered 424, never 502 or 503: nginx counts those (with errors and timeouts) against the node,
    takes a node that failed out of rotation for every model, and retries the call elsewhere. Only
    a node that cannot serve at all (draining, overloaded) answers 503. The body says what the
    gateway answers its own client (`answer_status`) and whether another attempt may succeed
    (`retry`); the gateway, not nginx, decides on that retry (`NodeRefusal`)."""

    status_code = 424
    answer_status = 503
    retry = True

    def body_fields(self) -> dict[str, Any]:
        return {"answer_status": self.answer_status, "retry": self.retry}


@dataclass(frozen=True)
class NodeRefusal:
    """A node's (or nginx's) answer other than 200, read once for every caller of the balancer."""

    status: int  # what the gateway answers its client
    reason: str
    retry: bool  # another attempt, on this node or another, may succeed

    @classmethod
    def read(cls, status: int, content: bytes) -> NodeRefusal:
        """A model-level refusal (424) carries its own answer status; any other 5xx may pass on
        another attempt; a 4xx refuses the request itself."""
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return cls(status, content[:200].decode(errors="replace"), status >= 500)
        reason = str(body.get("error", content[:200].decode(errors="replace")))
        answer_status = body.get("answer_status")
        if status == ModelUnavailableHere.status_code and isinstance(answer_status, int):
            return cls(answer_status, reason, body.get("retry") is True)
        return cls(status, reason, status >= 500)


class MalformedRequest(ServiceError):
    status_code = 400


class InvalidRequest(ServiceError):
    """A well-formed body that breaks the route's declared type."""

    status_code = 422


def parse_body(adapter: TypeAdapter[T], raw: bytes) -> T:
    """Parse and validate a body against its wire type: 400 when it is no JSON, 422 naming each
    field that breaks the type. Strictly, as its JSON Schema reads: 0 is no boolean, "1" no integer,
    a number no date-time."""
    try:
        return adapter.validate_json(raw, strict=True)
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


Handlers = dict[int | type[Exception], ErrorHandler]


def exception_handlers(count: Callable[[str], None], **extra: str) -> Handlers:
    """Every error answer of a service in one place and one body shape, each one counted by `count`
    (the rejected-requests metric) under its reason: the ServiceError's name, `RequestValidationError`
    or the HTTP status (`HTTP404`, `HTTP405`). `extra` fields (a node's id) go in every body."""

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        count(type(exc).__name__)
        return error_response(exc.message, exc.status_code, exc.headers, **extra, **exc.body_fields())

    async def http_exception(request: Request, exc: Exception) -> Response:
        """Starlette's and FastAPI's own refusals: unknown route, wrong method (with Allow)."""
        assert isinstance(exc, StarletteHTTPException)
        count(f"HTTP{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return error_response(str(exc.detail), exc.status_code, headers, **extra)

    async def validation_error(request: Request, exc: Exception) -> Response:
        """FastAPI's request validation errors, naming each bad field."""
        assert isinstance(exc, RequestValidationError)
        count("RequestValidationError")
        return error_response(f"invalid request: {describe(exc.errors())}", 422, None, **extra)

    return {
        ServiceError: service_error,
        StarletteHTTPException: http_exception,
        RequestValidationError: validation_error,
    }


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method the request's path is served with, asked of the routes as routing asks them.
    Starlette's 405 names only the methods of the first route that matched the path, where one
    path may have several (GET and POST /api/v1/models)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    )
