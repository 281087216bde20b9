from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# What a parsed JSON value is when it is no array or object (bool is an int; None is null).
JSON_SCALARS = (str, int, float, type(None))


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
