"""X-Request-ID: taken from the client (or made), kept for the request, passed upstream, logged by
every service in its access line, and returned in the response."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
# A batched upstream call carries the ids of all its requests, comma-separated.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:@-]{1,128}(,[A-Za-z0-9._:@-]{1,128}){0,255}$")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
access_log = logging.getLogger("modelfleet.access")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _ACCEPTED.match(given) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                '"%s %s" %d %.2fms request_id=%s',
                scope["method"], scope["path"], status, (time.perf_counter() - start) * 1000, request_id,
            )  # fmt: skip
            current_request_id.reset(token)
