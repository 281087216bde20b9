"""The modelhost app factory: `uvicorn --factory modelhost.app:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics.definitions import ModelhostMetrics
from metrics.exposition import metrics_router
from modelhost.artifact_cache import ArtifactCache
from modelhost.batch_worker import BatchWorker
from modelhost.remote_graph import GatewayAccess
from modelhost.routes import HOT_ROUTES, health, internal, router
from modelhost.settings import ModelhostSettings
from modelhost.store import ModelStore
from modelhost.sync import Reconciler
from wire import tracing
from wire.access import AccessMiddleware
from wire.bearer import Tokens, bearer_headers, document_tokens
from wire.errors import exception_handlers
from wire.hot_routes import ServiceApp
from wire.openapi import ERROR_RESPONSES, amend_document
from wire.startup import freeze_startup_objects
from wire.tls import client_context
from wire.tracing_settings import TracingSettings


def create_app(
    settings: ModelhostSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or ModelhostSettings()
    tokens = Tokens(settings.management_token, inference=None)  # a node has no inference scope
    registry = CollectorRegistry()
    metrics = ModelhostMetrics(registry, settings.node_id)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.fetch_timeout_s, connect=2.0)
        # Calls to the inferrer's internal routes carry the management token.
        headers = bearer_headers(settings.management_token)
        verify = client_context(settings.tls_ca_file) or True
        async with httpx.AsyncClient(
            transport=transport, timeout=timeout, headers=headers, verify=verify
        ) as client:
            cache = ArtifactCache(
                settings.cache_dir, settings.inferrer_url, client, int(settings.cache_budget_mib * 2**20)
            )
            budget = settings.memory_budget_mib
            store = ModelStore(
                settings.node_id,
                cache,
                metrics,
                int(budget * 2**20) if budget is not None else None,
                settings.inline_predict_below_ms / 1000,
            )
            reconciler = Reconciler(
                store, cache, client, settings.inferrer_url, settings.sync_interval_s, settings.idle_unload_s
            )
            metrics.ready.set_function(lambda: reconciler.readiness.ready)  # read at each scrape
            metrics.draining.set_function(lambda: reconciler.readiness.draining)
            app.state.tokens = tokens
            app.state.store = store
            app.state.reconciler = reconciler
            ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None
            gateway = GatewayAccess(settings.inferrer_url, settings.management_token, ca_file)
            batch_worker = BatchWorker(settings.node_id, settings.data_dir, cache, gateway)
            app.state.batch_worker = batch_worker
            sync_task = asyncio.create_task(reconciler.run_forever(), name="reconcile")
            tracing.install("modelhost", settings.node_id, TracingSettings(), starts_traces=False)
            try:
                freeze_startup_objects()
                yield
            finally:
                sync_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync_task
                batch_worker.close()
                store.close()
                await asyncio.to_thread(tracing.shutdown)  # its last export, once nothing runs

    app = ServiceApp(
        title="modelfleet modelhost",
        lifespan=lifespan,
        exception_handlers=exception_handlers(
            lambda reason: metrics.http.rejected("modelhost", reason).inc(), node=settings.node_id
        ),
    )
    for routes in (health, router, internal):
        app.include_router(routes, responses=ERROR_RESPONSES)
    app.include_router(metrics_router(registry))
    front = (
        lambda inner: NodeHeaderMiddleware(inner, node=settings.node_id),
        lambda inner: AccessMiddleware(inner, metrics=metrics.http),
    )
    app.serve_front(HOT_ROUTES, front)
    amend_document(app, document_tokens(tokens))
    return app


class NodeHeaderMiddleware:
    """Every answer says which node gave it, in X-Modelhost-Node."""

    def __init__(self, app: ASGIApp, node: str) -> None:
        self.app = app
        self.header = (b"x-modelhost-node", node.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_node(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_node)
