"""Hot paths: each declared once, with its handler, the scope it needs and its OpenAPI entry.

FastAPI's stack costs more than a one-row predict: per request its own middleware (error telemetry
with a tracer look-up, a body limit, the exception middleware, a dependency exit stack), a linear
route match and dependency solving. So a `ServiceApp` serves its hot routes ahead of all of that:
every HTTP request first passes the service's own `front` middleware (request id, access log,
metrics, body limit), then a hot route whose path and method match is called directly (its scope
checked, its errors answered by the app's exception handlers); every other request goes on to
FastAPI as usual. From the same declaration FastAPI gets a documentation-only route: the OpenAPI
document lists the path, its parameters, its body, its answers and its bearer scheme, but that route
never serves (the hot route matches first), so nothing can be added to it that would silently not run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import compile_path, get_route_path
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from wire.bearer import INFERENCE, MANAGEMENT, Scope, authorize
from wire.openapi import ERROR_RESPONSES

Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[ASGIApp], ASGIApp]  # wraps an app: `lambda app: AccessMiddleware(app, ...)`
_DEPENDENCY = {Scope.INFERENCE: INFERENCE, Scope.MANAGEMENT: MANAGEMENT}


@dataclass(frozen=True)
class HotRoute:
    path: str
    handler: Handler  # reads its path parameters from request.path_params
    scope: Scope
    methods: tuple[str, ...] = ("POST",)
    openapi_extra: dict[str, Any] = field(default_factory=dict)
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)


class ServiceApp(FastAPI):
    """A FastAPI app whose HTTP requests pass `front` middleware first, and whose hot routes are
    served there, ahead of FastAPI's own middleware and routing (see the module's doc)."""

    _front: ASGIApp | None = None

    def serve_front(self, routes: Sequence[HotRoute], middleware: Sequence[Middleware]) -> None:
        """Serve `routes` ahead of FastAPI, inside `middleware` (the first wraps closest to the
        routes); every HTTP request passes the middleware."""
        for route in routes:
            self.add_api_route(
                route.path,
                _documented(route),
                methods=list(route.methods),
                dependencies=[_DEPENDENCY[route.scope]],
                openapi_extra=route.openapi_extra or None,
                responses={**ERROR_RESPONSES, **route.responses},
                description=inspect.getdoc(route.handler) or "",
                name=route.handler.__name__,
            )
        front: ASGIApp = _HotRouter(self, routes, self._fastapi)
        for wrap in middleware:
            front = wrap(front)
        self._front = front

    async def _fastapi(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if self._front is not None and scope["type"] == "http":
            scope["app"] = self
            await self._front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class _HotRouter:
    def __init__(self, app: FastAPI, routes: Sequence[HotRoute], fallback: ASGIApp) -> None:
        self._app = app
        self._routes = [(compile_path(route.path)[0], route) for route in routes]
        self._fallback = fallback

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        path, method = get_route_path(scope), scope["method"]  # without a root path, as Starlette matches
        for pattern, route in self._routes:
            if method in route.methods and (match := pattern.match(path)) is not None:
                scope["path_params"] = match.groupdict()
                scope["route"] = route  # its template labels the request's metrics
                await self._serve(route, scope, receive, send)
                return
        await self._fallback(scope, receive, send)

    async def _serve(self, route: HotRoute, scope: AsgiScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            authorize(request, route.scope)
            response = await route.handler(request)
        except Exception as exc:
            answer = _handler_for(self._app, exc)
            if answer is None:  # answered as FastAPI's own stack answers it, inside the front
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                raise  # for the server to log
            response = await answer(request, exc)
        await response(scope, receive, send)


def _handler_for(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's exception handler for `exc`, by its class or the nearest base, as Starlette finds it."""
    for cls in type(exc).__mro__:
        if cls in app.exception_handlers:
            handler: Any = app.exception_handlers[cls]
            return handler
    return None


def _documented(route: HotRoute) -> Callable[..., Awaitable[Response]]:
    """An endpoint whose signature names the path's parameters, for the OpenAPI document only."""

    async def documented(**path_params: str) -> Response:
        raise AssertionError(f"{route.path} is served by its hot route")  # pragma: no cover

    names = re.findall(r"\{(\w+)\}", route.path)
    documented.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str) for name in names]
    )
    return documented
