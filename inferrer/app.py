"""The inferrer app factory: `uvicorn --factory inferrer.app:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from inferrer.api.autoscaler import router as autoscaler_router
from inferrer.api.body_limit import BodyLimitMiddleware
from inferrer.api.fleet import document_selftest_limit
from inferrer.api.fleet import router as fleet_router
from inferrer.api.graphs import router as graphs_router
from inferrer.api.internal import router as internal_router
from inferrer.api.jobs import router as jobs_router
from inferrer.api.models import router as models_router
from inferrer.api.predict import HOT_ROUTES as PREDICT_HOT_ROUTES
from inferrer.api.sagemaker import router as sagemaker_router
from inferrer.api.streams import router as streams_router
from inferrer.api.ui import router as ui_router
from inferrer.api.v2 import HOT_ROUTES as V2_HOT_ROUTES
from inferrer.api.v2 import router as v2_router
from inferrer.api.watches import router as watches_router
from inferrer.control.lifecycle import ModelLifecycle
from inferrer.dataplane.admission import Admission
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.batching import Batcher
from inferrer.dataplane.node_hold import HoldingUpstream
from inferrer.dataplane.prediction import PredictionService
from inferrer.dataplane.prediction_cache import PredictionCache
from inferrer.errors import RepositoryUnreachable
from inferrer.fleet_clients import ModelHostClientManager
from inferrer.scaling.service import LocalSignals
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.settings import InferrerSettings
from inferrer.state.node_directory import NodeDirectory
from inferrer.state.repository import ModelRepository
from inferrer.streams.settings import StreamSettings
from inferrer.systems import graph_system, job_system, open_repository, scaling_system, stream_system
from metrics.definitions import InferrerMetrics, RuntimeInfo
from metrics.exposition import metrics_router
from metrics.scaling import ScalingMetrics
from metrics.streams import StreamMetrics
from wire import tracing
from wire.access import AccessMiddleware
from wire.bearer import Tokens, document_tokens
from wire.errors import exception_handlers
from wire.hot_routes import ServiceApp
from wire.openapi import ERROR_RESPONSES, amend_document
from wire.startup import freeze_startup_objects
from wire.tracing_settings import TracingSettings


def create_app(
    settings: InferrerSettings | None = None,
    upstream: Upstream | None = None,
    node_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the gateway. Tests may put an in-process or faulty fleet behind it: `upstream` in place
    of the balancer (predictions), `node_transport` under the nodes' direct client (sync, status)."""
    settings = settings or InferrerSettings()
    tokens = Tokens(settings.management_token, settings.inference_token)
    registry = CollectorRegistry()
    metrics = InferrerMetrics(registry)
    streams, stream_metrics = StreamSettings(), StreamMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        directory = NodeDirectory(settings.nodes_file)
        clients = ModelHostClientManager(settings, metrics, directory, upstream, node_transport)
        async with clients as (balancer, nodes):
            repository = open_repository(settings)
            cache = PredictionCache(settings.prediction_cache_size, metrics.cache_hits, metrics.cache_misses)
            batcher = Batcher(
                settings.batch_max_rows,
                settings.batch_max_wait_s,
                settings.batch_max_in_flight,
                metrics,
                settings.batch_gather_above_s,
            )
            app.state.settings = settings
            app.state.tokens = tokens
            app.state.metrics = metrics
            admission = Admission(settings.max_in_flight, settings.max_request_timeout_s, metrics)
            app.state.admission = admission
            autoscale = AutoscaleSettings()
            scaling_metrics = ScalingMetrics(registry)
            hold = HoldingUpstream(balancer, lambda: app.state.scaling.cold_start_s)
            scaling_metrics.held.set_function(lambda: hold.held)
            if autoscale.limits.enabled:  # while nodes start from zero, predictions wait for one
                balancer = hold
            app.state.balancer = balancer
            app.state.lifecycle = ModelLifecycle(
                repository,
                nodes,
                deploy_pin_s=4 * settings.node_sync_timeout_s,
                activate_with_no_node=autoscale.limits.enabled and autoscale.min_nodes == 0,
            )
            prediction = PredictionService(repository, balancer, metrics, cache, batcher)
            app.state.prediction = prediction
            runtimes = RuntimeInfo(lambda: _runtimes(repository))
            registry.register(runtimes)
            tracing.install("inferrer", settings.gateway_id, TracingSettings())
            try:
                online = admission.recent_peak
                graphs_running = graph_system(settings, repository, prediction, metrics)
                async with (
                    graphs_running as graphs,
                    job_system(settings, repository, balancer, prediction, metrics, online, graphs) as (
                        jobs,
                        watches,
                    ),
                    stream_system(
                        settings, streams, repository, graphs, prediction, stream_metrics
                    ) as stream,
                ):
                    app.state.streams = stream
                    app.state.jobs = jobs
                    app.state.watches = watches
                    app.state.graphs = graphs

                    async def partitions_waiting() -> int:  # as many as the jobs' limit lets run at once
                        return min(await jobs.store.partitions_waiting(), settings.jobs_max_in_flight)

                    local = LocalSignals(
                        admission.recent_peak, lambda: hold.held, batcher.queued_rows,
                        partitions_waiting, lambda: batcher.predict_s,
                    )  # fmt: skip
                    async with scaling_system(settings, autoscale, local, nodes, scaling_metrics) as scaling:
                        app.state.scaling = scaling
                        freeze_startup_objects()
                        yield
            finally:
                registry.unregister(runtimes)
                repository.close()
                await asyncio.to_thread(tracing.shutdown)  # its last export

    def count_refusal(reason: str) -> None:
        metrics.http.rejected("inferrer", reason).inc()

    app = ServiceApp(
        title="modelfleet inferrer", lifespan=lifespan, exception_handlers=exception_handlers(count_refusal)
    )
    routers = (
        fleet_router, models_router, graphs_router, jobs_router, watches_router, v2_router, sagemaker_router,
        internal_router, autoscaler_router, streams_router, ui_router,
    )  # fmt: skip
    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(metrics_router(registry))
    front = (
        lambda inner: BodyLimitMiddleware(
            inner, settings.max_body_bytes, settings.max_upload_bytes, count=count_refusal
        ),
        lambda inner: AccessMiddleware(inner, metrics=metrics.http, per_model=metrics.model_requests),
    )
    app.serve_front([*PREDICT_HOT_ROUTES, *V2_HOT_ROUTES], front)
    amend_document(app, document_tokens(tokens), document_selftest_limit(settings.max_selftest_items))
    return app


def _runtimes(repository: ModelRepository) -> list[tuple[str, str, str]]:
    """For /metrics: none while the shared repository is out of reach (the rest is still scraped)."""
    try:
        return [(m.name, m.version, m.runtime_name) for m in repository.all_versions()]
    except RepositoryUnreachable:
        return []
