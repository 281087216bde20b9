"""The plain GET /metrics route and a middleware that times every request by route template."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics.definitions import HttpMetrics


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetricsMiddleware:
    """Pure ASGI middleware: labels by route template so label sets stay bounded."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.in_flight.dec()
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests(self.metrics.service, route, method, str(status)).inc()
            self.metrics.latency(self.metrics.service, route, method).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    """The matched route's template (the router records it in the scope), so labels stay bounded."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))
