"""The gateway's errors. Bodies are {"error": ...} (see wire.errors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wire.errors import (
    ErrorHandler,
    MalformedRequest,
    ServiceError,
    handle_http_exception,
    handle_validation_error,
    service_error_handler,
)

__all__ = ["MalformedRequest"]


class InferrerError(ServiceError):
    """Base of the gateway's own errors."""


class ModelNotFound(InferrerError):
    status_code = 404


class NodeNotFound(InferrerError):
    status_code = 404


class VersionConflict(InferrerError):
    status_code = 409


class PayloadTooLarge(InferrerError):
    status_code = 413


class InvalidInput(InferrerError):
    status_code = 422


class UpstreamAnswered(InferrerError):
    """A node refused the request (its status and message are passed on)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class UpstreamUnavailable(InferrerError):
    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class UpstreamTimeout(InferrerError):
    status_code = 504


def exception_handlers(count: Callable[[str], None]) -> dict[int | type[Exception], ErrorHandler]:
    """The gateway's handlers; `count` records each error by name (a metric)."""
    return {
        ServiceError: service_error_handler(count),
        RequestValidationError: handle_validation_error,
        StarletteHTTPException: handle_http_exception,
    }
