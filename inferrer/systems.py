"""The gateway's systems, composed for the app factory (inferrer/app.py): the repository, and the
graphs, jobs and watches, autoscaler and stream bindings, each with the loop it runs for the app's
life."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable

from datafiles.locations import S3Settings, Storage
from inferrer.api.jobs import inline_parser
from inferrer.control.nodes import FleetNodes
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.prediction import PredictionService
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
from inferrer.state.repository import ModelRepository
from inferrer.state.shared_backend import SharedBackend
from inferrer.state.shared_schema import open_index_engine
from inferrer.streams.broker import connect
from inferrer.streams.consumer import BindingConsumer
from inferrer.streams.group_reader import GroupReader
from inferrer.streams.handlers import Converging, Predicting
from inferrer.streams.records import BindingRecord
from inferrer.streams.registry import BindingRegistry
from inferrer.streams.service import StreamService
from inferrer.streams.settings import StreamSettings
from inferrer.streams.supervisor import StreamSupervisor
from inferrer.watches.places import WatchedPlaces
from inferrer.watches.processing import FileProcessor
from inferrer.watches.service import WatchService
from inferrer.watches.store import WatchStore
from inferrer.watches.store_async import AsyncWatchStore
from inferrer.watches.supervisor import WatchLimits, WatchSupervisor
from metrics.definitions import InferrerMetrics
from metrics.scaling import ScalingMetrics
from metrics.streams import StreamMetrics


def open_repository(settings: InferrerSettings) -> ModelRepository:
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


def state_db_url(settings: InferrerSettings) -> str:
    """The job store's database: also where graphs are kept."""
    state = settings.data_dir / ".modelfleet"  # hidden: no job location can name it
    state.mkdir(parents=True, exist_ok=True)
    return settings.jobs_db_url or f"sqlite:///{state / 'jobs.db'}"


@contextlib.asynccontextmanager
async def graph_system(
    settings: InferrerSettings,
    repository: ModelRepository,
    prediction: PredictionService,
    metrics: InferrerMetrics,
) -> AsyncIterator[GraphService]:
    """The graphs' store and the poll that keeps this process's active versions current."""
    engine = open_graph_engine(state_db_url(settings))
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
async def scaling_system(
    settings: InferrerSettings,
    autoscale: AutoscaleSettings,
    local: LocalSignals,
    nodes: FleetNodes,
    metrics: ScalingMetrics,
) -> AsyncIterator[ScalingService]:
    """The autoscaler's state in the job store's database, and its loop when autoscaling is on."""
    engine = open_scaling_engine(state_db_url(settings))
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
async def job_system(
    settings: InferrerSettings,
    repository: ModelRepository,
    balancer: Upstream,
    prediction: PredictionService,
    metrics: InferrerMetrics,
    online_in_flight: Callable[[], int],
    graphs: GraphService,
) -> AsyncIterator[tuple[JobService, WatchService]]:
    """The job store, its runner and the watches' supervisor, running for the app's life."""
    engine = open_engine(state_db_url(settings))
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


@contextlib.asynccontextmanager
async def stream_system(
    settings: InferrerSettings,
    streams: StreamSettings,
    repository: ModelRepository,
    graphs: GraphService,
    prediction: PredictionService,
    metrics: StreamMetrics,
) -> AsyncIterator[StreamService]:
    """Off (every stream route answers 503) when no broker is set."""
    if streams.broker_url is None:
        yield StreamService(None, None, repository, graphs)
        return
    redis = connect(streams.broker_url.get_secret_value())
    registry = BindingRegistry(redis)
    # One consumer name per process life: a restarted process is a new consumer, and what the old
    # one held is taken over once idle.
    consumer_name = f"{settings.gateway_id}-{os.getpid()}-{secrets.token_hex(3)}"

    def consumer_for(record: BindingRecord) -> BindingConsumer:
        spec = record.spec
        reader = GroupReader(redis, spec, consumer_name, streams.claim_idle_s)
        handler = (
            Converging(spec, redis)
            if spec.converge is not None
            else Predicting(spec, repository, graphs, prediction, settings.rows_allowed, consumer_name)
        )
        return BindingConsumer(reader, handler, streams.batches_in_flight, streams.claim_idle_s, metrics)

    supervisor = StreamSupervisor(registry, consumer_for, streams.refresh_s, metrics)
    supervisor.start()
    try:
        yield StreamService(registry, supervisor, repository, graphs)
    finally:
        await supervisor.close()
        await redis.aclose()
