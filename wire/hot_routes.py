"""Hot paths: each declared once, with its handler, the scope it needs and its OpenAPI entry.

FastAPI's nested routers and dependency solving cost more than a one-row predict: a plain Starlette
route inserted first served ~8,000 req/s where the same endpoint behind included FastAPI routers
served ~4,600 (uvicorn, wrk, c=32, on a 2-core machine). So a hot route is served by a plain route
placed ahead of FastAPI's routing, which checks the declared scope before it calls the handler.
From the same declaration, FastAPI gets a documentation-only route: the OpenAPI document lists the
path, its parameters, its body, its answers and its bearer scheme, but that route never serves (the
plain one matches first), so nothing can be added to it that would silently not run.
Middleware and exception handlers apply to both.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route

from wire.bearer import INFERENCE, MANAGEMENT, Scope, authorize
from wire.openapi import ERROR_RESPONSES

Handler = Callable[[Request], Awaitable[Response]]
_DEPENDENCY = {Scope.INFERENCE: INFERENCE, Scope.MANAGEMENT: MANAGEMENT}


@dataclass(frozen=True)
class HotRoute:
    path: str
    handler: Handler  # reads its path parameters from request.path_params
    scope: Scope
    methods: tuple[str, ...] = ("POST",)
    openapi_extra: dict[str, Any] = field(default_factory=dict)
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)


def add_hot_routes(app: FastAPI, routes: Sequence[HotRoute]) -> None:
    for route in routes:
        app.add_api_route(
            route.path,
            _documented(route),
            methods=list(route.methods),
            dependencies=[_DEPENDENCY[route.scope]],
            openapi_extra=route.openapi_extra or None,
            responses={**ERROR_RESPONSES, **route.responses},
            description=inspect.getdoc(route.handler) or "",
            name=route.handler.__name__,
        )
    for route in reversed(routes):
        app.router.routes.insert(0, Route(route.path, _checked(route), methods=list(route.methods)))


def _checked(route: HotRoute) -> Handler:
    async def serve(request: Request) -> Response:
        authorize(request, route.scope)
        return await route.handler(request)

    return serve


def _documented(route: HotRoute) -> Callable[..., Awaitable[Response]]:
    """An endpoint whose signature names the path's parameters, for the OpenAPI document only."""

    async def documented(**path_params: str) -> Response:
        raise AssertionError(f"{route.path} is served by its plain route")  # pragma: no cover

    names = re.findall(r"\{(\w+)\}", route.path)
    documented.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str) for name in names]
    )
    return documented
