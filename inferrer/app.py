"""The inferrer app factory: `uvicorn --factory inferrer.app:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from datafiles.locations import S3Settings, Storage
from inferrer.api.autoscaler import router as autoscaler_router
from inferrer.api.body_limit import BodyLimitMiddleware
from inferrer.api.fleet import document_selftest_limit
from inferrer.api.fleet import router as fleet_router
from inferrer.api.graphs import router as graphs_router
from inferrer.api.internal import router as internal_router
from inferrer.api.jobs import inline_parser
from inferrer.api.jobs import router as jobs_router
from inferrer.api.models import router as models_router
from inferrer.api.predict import HOT_ROUTES as PREDICT_HOT_ROUTES
from inferrer.api.sagemaker import router as sagemaker_router
from inferrer.api.v2 import HOT_ROUTES as V2_HOT_ROUTES
from inferrer.api.v2 import router as v2_router
from inferrer.api.watches import router as watches_router
from inferrer.control.lifecycle import ModelLifecycle
from inferrer.control.nodes import FleetNodes
from inferrer.dataplane.admission import Admission
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.batching import Batcher
from inferrer.dataplane.node_hold import HoldingUpstream
from inferrer.dataplane.prediction import PredictionService
from inferrer.dataplane.prediction_cache import PredictionCache
from inferrer.errors import RepositoryUnreachable
from inferrer.fleet_clients import ModelHostClientManager
from inferrer.graphs.execution import GraphRunner
from inferrer.graphs.service import GraphService
from inferrer.graphs.store import GraphStore, open_graph_engine
from inferrer.jobs.files import JobFiles
from inferrer.jobs.finishing import JobFinisher
from inferrer.jobs.runner import JobRunner, RunnerLimits
from inferrer.jobs.schema import open_engine
from inferrer.jobs.service import JobService
from inferrer.jobs.store import JobStore
from inferrer.jobs.store_async import AsyncJobStore
from inferrer.scaling.service import LocalSignals, ScalingService
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.scaling.store import ScalingStore, open_scaling_engine
from inferrer.settings import InferrerSettings
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.node_directory import NodeDirectory
from inferrer.state.repository import ModelRepository
from inferrer.state.shared_backend import SharedBackend
from inferrer.state.shared_schema import open_index_engine
from inferrer.watches.places import WatchedPlaces
from inferrer.watches.processing import FileProcessor
from inferrer.watches.service import WatchService
from inferrer.watches.store import WatchStore
from inferrer.watches.store_async import AsyncWatchStore
from inferrer.watches.supervisor import WatchLimits, WatchSupervisor
from metrics.definitions import InferrerMetrics, RuntimeInfo
from metrics.exposition import metrics_router
from metrics.scaling import ScalingMetrics
from wire.access import AccessMiddleware
from wire.bearer import Tokens, document_tokens
from wire.errors import exception_handlers
from wire.hot_routes import ServiceApp
from wire.openapi import ERROR_RESPONSES, amend_document
from wire.startup import freeze_startup_objects


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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        directory = NodeDirectory(settings.nodes_file)
        clients = ModelHostClientManager(settings, metrics, directory, upstream, node_transport)
        async with clients as (balancer, nodes):
            repository = _open_repository(settings)
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
            try:
                online = admission.recent_peak
                graph_system = _graph_system(settings, repository, prediction, metrics)
                async with (
                    graph_system as graphs,
                    _job_system(settings, repository, balancer, prediction, metrics, online, graphs) as (
                        jobs,
                        watches,
                    ),
                ):
                    app.state.jobs = jobs
                    app.state.watches = watches
                    app.state.graphs = graphs

                    async def partitions_waiting() -> int:  # as many as the jobs' limit lets run at once
                        return min(await jobs.store.partitions_waiting(), settings.jobs_max_in_flight)

                    local = LocalSignals(
                        admission.recent_peak, lambda: hold.held, batcher.queued_rows,
                        partitions_waiting, lambda: batcher.predict_s,
                    )  # fmt: skip
                    async with _scaling_system(settings, autoscale, local, nodes, scaling_metrics) as scaling:
                        app.state.scaling = scaling
                        freeze_startup_objects()
                        yield
            finally:
                registry.unregister(runtimes)
                repository.close()

    def count_refusal(reason: str) -> None:
        metrics.http.rejected("inferrer", reason).inc()

    app = ServiceApp(
        title="modelfleet inferrer", lifespan=lifespan, exception_handlers=exception_handlers(count_refusal)
    )
    routers = (
        fleet_router, models_router, graphs_router, jobs_router, watches_router, v2_router, sagemaker_router,
        internal_router, autoscaler_router,
    )  # fmt: skip
    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(metrics_router(registry))
    front = (
        lambda inner: BodyLimitMiddleware(
            inner, settings.max_body_bytes, settings.max_upload_bytes, count=count_refusal
        ),
        lambda inner: AccessMiddleware(inner, metrics=metrics.http),
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


def _open_repository(settings: InferrerSettings) -> ModelRepository:
    """The folder by default; the shared index and bucket when the settings name them."""
    if settings.repository_db_url is None or settings.repository_artifacts_url is None:
        return ModelRepository(FolderBackend(settings.repository_dir), settings.keep_versions)
    backend = SharedBackend(
        open_index_engine(settings.repository_db_url),
        Storage(settings.data_dir, S3Settings()),
        settings.repository_artifacts_url,
        settings.repository_poll_s,
        settings.repository_lease_s,
    )
    return ModelRepository(backend, settings.keep_versions)


def _state_db_url(settings: InferrerSettings) -> str:
    """The job store's database: also where graphs are kept."""
    state = settings.data_dir / ".modelfleet"  # hidden: no job location can name it
    state.mkdir(parents=True, exist_ok=True)
    return settings.jobs_db_url or f"sqlite:///{state / 'jobs.db'}"


@contextlib.asynccontextmanager
async def _graph_system(
    settings: InferrerSettings,
    repository: ModelRepository,
    prediction: PredictionService,
    metrics: InferrerMetrics,
) -> AsyncIterator[GraphService]:
    """The graphs' store and the poll that keeps this process's active versions current."""
    engine = open_graph_engine(_state_db_url(settings))
    graphs = GraphService(
        GraphStore(engine), repository, GraphRunner(prediction, metrics.graphs), settings.graphs_poll_s
    )
    await graphs.refresh()
    task = asyncio.create_task(graphs.run_forever(), name="graphs")
    try:
        yield graphs
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.dispose()


@contextlib.asynccontextmanager
async def _scaling_system(
    settings: InferrerSettings,
    autoscale: AutoscaleSettings,
    local: LocalSignals,
    nodes: FleetNodes,
    metrics: ScalingMetrics,
) -> AsyncIterator[ScalingService]:
    """The autoscaler's state in the job store's database, and its loop when autoscaling is on."""
    engine = open_scaling_engine(_state_db_url(settings))
    scaling = ScalingService(
        ScalingStore(engine), autoscale, local, nodes.statuses, metrics, settings.gateway_id
    )
    task = asyncio.create_task(scaling.run_forever(), name="autoscaler") if autoscale.limits.enabled else None
    try:
        yield scaling
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        engine.dispose()


@contextlib.asynccontextmanager
async def _job_system(
    settings: InferrerSettings,
    repository: ModelRepository,
    balancer: Upstream,
    prediction: PredictionService,
    metrics: InferrerMetrics,
    online_in_flight: Callable[[], int],
    graphs: GraphService,
) -> AsyncIterator[tuple[JobService, WatchService]]:
    """The job store, its runner and the watches' supervisor, running for the app's life."""
    engine = open_engine(_state_db_url(settings))
    storage = Storage(settings.data_dir, S3Settings())
    store, files = AsyncJobStore(JobStore(engine)), JobFiles(storage)
    finisher = JobFinisher(store, files, repository, metrics.jobs)
    limits = RunnerLimits(
        settings.jobs_max_in_flight,
        settings.jobs_lease_s,
        settings.jobs_partition_timeout_s,
        online_in_flight=online_in_flight,
    )
    parse_inline = inline_parser(settings.rows_allowed)
    runner = JobRunner(
        store, finisher, repository, balancer, prediction, parse_inline, limits, metrics.jobs, graphs
    )
    jobs = JobService(store, files, repository, runner, settings.jobs_deadline_s, graphs)
    watch_store, places = AsyncWatchStore(WatchStore(engine)), WatchedPlaces(storage)
    watch_limits = WatchLimits(
        settings.watch_interval_s, settings.watch_settle_s, settings.watch_max_running, settings.jobs_lease_s
    )
    processor = FileProcessor(watch_store, jobs, places, repository, settings.jobs_lease_s)
    supervisor = WatchSupervisor(watch_store, processor, places, watch_limits, metrics.watches)
    finisher.on_finish(supervisor.wake_for_work)
    tasks = [
        asyncio.create_task(runner.run_forever(), name="jobs"),
        asyncio.create_task(supervisor.run_forever(), name="watches"),
    ]
    try:
        yield jobs, WatchService(watch_store, supervisor, places, storage, repository, graphs)
    finally:
        await supervisor.close()
        await runner.close()
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        engine.dispose()
