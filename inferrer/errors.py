"""The gateway's errors: one base, one handler, one body shape {"error": ...}."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from wire.json import error_response, handle_validation_error


class InferrerError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(InferrerError):
    status_code = 400


class ModelNotFound(InferrerError):
    status_code = 404


class VersionConflict(InferrerError):
    status_code = 409


class PayloadTooLarge(InferrerError):
    status_code = 413


class InvalidInput(InferrerError):
    status_code = 422


class UpstreamUnavailable(InferrerError):
    status_code = 503


class UpstreamTimeout(InferrerError):
    status_code = 504


async def handle_inferrer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InferrerError)
    return error_response(exc.message, exc.status_code)


EXCEPTION_HANDLERS = {
    InferrerError: handle_inferrer_error,
    RequestValidationError: handle_validation_error,
}
