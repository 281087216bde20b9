"""The node's errors: one base, one handler, one body shape {"error": ..., "node": ...}."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from starlette.responses import Response

from wire.json import error_response


class ModelhostError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(ModelhostError):
    status_code = 400


class InvalidInput(ModelhostError):
    status_code = 422


class ModelNotLoaded(ModelhostError):
    # 503 so that nginx retries the prediction on another node.
    status_code = 503


class ArtifactUnavailable(ModelhostError):
    status_code = 502


def error_handler(node: str) -> Callable[[Request, Exception], Coroutine[Any, Any, Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelhostError)
        return error_response(exc.message, exc.status_code, node=node)

    return handle
