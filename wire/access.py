"""One pure ASGI middleware for what every request gets: an X-Request-ID (from the client, or made),
in-flight and per-route metrics (by route template, so label sets stay bounded), and an access log
line naming the request id. The id is returned in the response and kept in `current_request_id`
so calls upstream carry it.

A prediction route names its model in the request's scope (`name_model`) once it knows the model is
stored; the request is then also counted for that model (`PerModel`), from its first byte to its
answer."""

from __future__ import annotations

import itertools
import os
import re
import time
from contextvars import ContextVar
from typing import Any, Protocol

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics.definitions import HttpMetrics
from metrics.exposition import METRICS_PATH
from wire import tracing
from wire.access_log import AccessLog

# A batched upstream call carries the ids of all its requests, comma-separated.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:@-]{1,128}(,[A-Za-z0-9._:@-]{1,128}){0,255}$")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
_MODEL = "modelfleet.model"  # the scope's key for the model a prediction request targets


class PerModel(Protocol):
    def observe(self, model: str, status: int, seconds: float) -> None: ...


def name_model(scope: Scope, model: str) -> None:
    """Count this request for `model` too: a model that is stored (the label set stays bounded)."""
    scope[_MODEL] = model


def _request_ids() -> itertools.count[int]:
    """Ids unique across processes without a random draw per request: a random 64-bit prefix per
    process, then a counter (uuid4 costs a syscall and an object per request)."""
    return itertools.count(int.from_bytes(os.urandom(8)) << 64)


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics, per_model: PerModel | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.per_model = per_model
        self._ids = _request_ids()
        self._in_flight = 0
        self._log = AccessLog()
        metrics.in_flight.set_function(lambda: self._in_flight)  # read at each scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if given and _ACCEPTED.match(given) else f"{next(self._ids):032x}"
        token = current_request_id.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        counted = scope["path"] != METRICS_PATH  # a scrape does not count itself in flight
        self._in_flight += counted
        try:
            with tracing.server_span(scope["method"], scope["headers"]) as span:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    if span is not None:  # this request is traced
                        _describe(span, scope, status, request_id)
        finally:
            elapsed = time.perf_counter() - start
            self._in_flight -= counted
            route, method = _route(scope), scope["method"]
            self.metrics.requests(self.metrics.service, route, method, str(status)).inc()
            self.metrics.latency(self.metrics.service, route, method).observe(elapsed)
            if self.per_model is not None and (model := scope.get(_MODEL)) is not None:
                self.per_model.observe(model, status, elapsed)
            self._log.add(method, scope["path"], status, elapsed, request_id)
            current_request_id.reset(token)


def _route(scope: Scope) -> str:
    """The request's route template (bounded, unlike its path); "unmatched" when no route takes it.
    A request answered before routing (a body over the limit) is looked up among the app's routes."""
    route = scope.get("route")
    if route is None and (app := scope.get("app")) is not None:
        route = next((r for r in app.router.routes if r.matches(scope)[0] is Match.FULL), None)
        scope["route"] = route
    return str(getattr(route, "path", "unmatched"))


def _describe(span: Any, scope: Scope, status: int, request_id: str) -> None:
    span.update_name(f"{scope['method']} {_route(scope)}")
    span.set_attributes(
        {
            "http.request.method": scope["method"],
            "http.route": _route(scope),
            "http.response.status_code": status,
            "modelfleet.request_id": request_id,
            **({"modelfleet.model": scope[_MODEL]} if _MODEL in scope else {}),
        }
    )
    if status >= 500:
        tracing.mark_failed(span, f"answered {status}")
