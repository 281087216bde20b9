"""One pure ASGI middleware for what every request gets: an X-Request-ID (from the client, or made),
in-flight and per-route metrics (by route template, so label sets stay bounded), and an access log
line naming the request id. The id is returned in the response and kept in `current_request_id`
so calls upstream carry it."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics.definitions import HttpMetrics

# A batched upstream call carries the ids of all its requests, comma-separated.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:@-]{1,128}(,[A-Za-z0-9._:@-]{1,128}){0,255}$")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
access_log = logging.getLogger("modelfleet.access")


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

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

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_flight.dec()
            route, method = str(getattr(scope.get("route"), "path", "unmatched")), scope["method"]
            self.metrics.requests(self.metrics.service, route, method, str(status)).inc()
            self.metrics.latency(self.metrics.service, route, method).observe(elapsed)
            access_log.info(
                '"%s %s" %d %.2fms request_id=%s', method, scope["path"], status, elapsed * 1000, request_id
            )
            current_request_id.reset(token)
