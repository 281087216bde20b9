"""Request bodies larger than the limit answer 413 before they fill the gateway's memory.

Uploads (a model, or a job's file as multipart) may be up to INFERRER_MAX_UPLOAD_BYTES; every other
body up to INFERRER_MAX_BODY_BYTES.
A declared Content-Length over the limit is refused before the app sees the request; a chunked body
is counted as it arrives and refused when it passes the limit.

Either way the rest of the body is read and dropped before the answer, as nginx's lingering close
does, bounded in bytes and time: a client that sends its whole body before reading (Python's urllib,
requests) would otherwise see "connection reset by peer" instead of the 413.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferrer.errors import PayloadTooLarge
from wire.json import error_response

UPLOAD_PATHS = {"/api/v1/models", "/api/v1/jobs"}
DRAIN_MAX_BYTES = 256 << 20  # past this much refused body, or DRAIN_MAX_S, the connection is closed
DRAIN_MAX_S = 10.0


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int, count: Callable[[str], None]
    ) -> None:
        """`count`: records a refusal by its error name (the rejected-requests metric)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if _is_upload(scope) else self.max_body_bytes
        message = f"request body larger than the limit of {limit} bytes"
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await drain(receive, more_body=True)
            self.count(PayloadTooLarge.__name__)
            await error_response(message, 413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            chunk = await receive()
            if chunk["type"] == "http.request":
                received += len(chunk.get("body", b""))
                if received > limit:
                    await drain(receive, more_body=chunk.get("more_body", False))
                    raise PayloadTooLarge(message)  # answered and counted by the exception handler
            return chunk

        await self.app(scope, counted, send)


def _is_upload(scope: Scope) -> bool:
    if scope["path"] not in UPLOAD_PATHS:
        return False
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    return content_type.startswith(b"multipart/form-data")


async def drain(receive: Receive, more_body: bool) -> None:
    """Read and drop what is left of a request body, at most DRAIN_MAX_BYTES in DRAIN_MAX_S."""
    dropped = 0
    deadline = time.monotonic() + DRAIN_MAX_S
    while more_body and dropped <= DRAIN_MAX_BYTES:
        try:
            chunk = await asyncio.wait_for(receive(), deadline - time.monotonic())
        except TimeoutError:
            return
        if chunk["type"] != "http.request":
            return  # the client went away
        dropped += len(chunk.get("body", b""))
        more_body = chunk.get("more_body", False)
