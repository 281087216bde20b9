"""Request bodies larger than the limit answer 413 before they fill the gateway's memory.

Model uploads may be up to INFERRER_MAX_UPLOAD_BYTES; every other body up to INFERRER_MAX_BODY_BYTES.
A declared Content-Length over the limit is refused before reading; a chunked body is counted as it
arrives and refused when it passes the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferrer.errors import PayloadTooLarge
from wire.json import error_response

UPLOAD_PATH = "/api/v1/models"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope["path"] == UPLOAD_PATH else self.max_body_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_response(f"request body larger than the limit of {limit} bytes", 413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body larger than the limit of {limit} bytes")
            return message

        await self.app(scope, counted, send)
