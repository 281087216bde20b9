from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(Response):
    """JSON rendered by orjson (numpy arrays included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=ORJSON_OPTIONS)


def error_response(
    message: str, status_code: int, headers: dict[str, str] | None = None, **extra: Any
) -> FastJSONResponse:
    """The one error body shape of every service: {"error": "...", ...}."""
    return FastJSONResponse({"error": message, **extra}, status_code=status_code, headers=headers)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's request validation errors in the same body shape, naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
    return error_response(f"invalid request: {problems}", 422)
