"""The inferrer app factory: `uvicorn --factory inferrer.app:create_app`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from inferrer.admission import Admission
from inferrer.balancer_client import BalancerClient
from inferrer.batching import Batcher
from inferrer.body_limit import BodyLimitMiddleware
from inferrer.client import ModelHostClientManager
from inferrer.errors import exception_handlers
from inferrer.node_directory import NodeDirectory
from inferrer.prediction import PredictionService
from inferrer.prediction_cache import PredictionCache
from inferrer.repository import ModelRepository
from inferrer.routes_fleet import router as fleet_router
from inferrer.routes_internal import router as internal_router
from inferrer.routes_models import router as models_router
from inferrer.routes_predict import HOT_ROUTES as PREDICT_HOT_ROUTES
from inferrer.routes_v2 import HOT_ROUTES as V2_HOT_ROUTES
from inferrer.routes_v2 import router as v2_router
from inferrer.settings import InferrerSettings
from metrics.definitions import InferrerMetrics
from metrics.exposition import metrics_router
from wire.access import AccessMiddleware
from wire.bearer import Tokens, bearer_headers
from wire.hot_routes import add_hot_routes
from wire.openapi import ERROR_RESPONSES


def create_app(
    settings: InferrerSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the gateway. `transport` lets tests put an in-process or faulty fleet behind it."""
    settings = settings or InferrerSettings()
    registry = CollectorRegistry()
    metrics = InferrerMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        timeout = httpx.Timeout(settings.upstream_timeout_s, connect=2.0)
        # Node calls (broadcasts, status, drain) carry the management token the nodes require.
        headers = bearer_headers(settings.management_token)
        async with httpx.AsyncClient(
            transport=transport, limits=limits, timeout=timeout, headers=headers
        ) as client:
            app.state.settings = settings
            app.state.tokens = Tokens(settings.management_token, settings.inference_token)
            app.state.metrics = metrics
            repository = ModelRepository(settings.repository_dir)
            directory = NodeDirectory(settings.nodes_file)
            balancer = BalancerClient(
                settings.nginx_url,
                settings.max_request_timeout_s,
                metrics,
                directory,
                settings.management_token,
            )
            app.state.admission = Admission(settings.max_in_flight, settings.max_request_timeout_s, metrics)
            manager = ModelHostClientManager(client, balancer, directory, settings.status_timeout_s)
            cache = PredictionCache(settings.prediction_cache_size, metrics.cache_hits, metrics.cache_misses)
            app.state.repository = repository
            app.state.manager = manager
            batcher = Batcher(
                settings.batch_max_rows, settings.batch_max_wait_s, settings.batch_max_in_flight, metrics
            )
            app.state.prediction = PredictionService(repository, manager, metrics, cache, batcher)
            try:
                yield
            finally:
                await balancer.close()

    def count_refusal(reason: str) -> None:
        metrics.http.rejected("inferrer", reason).inc()

    app = FastAPI(
        title="modelfleet inferrer", lifespan=lifespan, exception_handlers=exception_handlers(count_refusal)
    )
    for router in (fleet_router, models_router, v2_router, internal_router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(metrics_router(registry))
    add_hot_routes(app, [*PREDICT_HOT_ROUTES, *V2_HOT_ROUTES])
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        count=count_refusal,
    )
    app.add_middleware(AccessMiddleware, metrics=metrics.http)
    return app
