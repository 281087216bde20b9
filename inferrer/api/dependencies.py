"""Typed access to what the app factory's lifespan put on app.state."""

from __future__ import annotations

from fastapi import Request

from inferrer.control.lifecycle import ModelLifecycle
from inferrer.control.nodes import FleetNodes
from inferrer.dataplane.admission import Admission
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.prediction import PredictionService
from inferrer.graphs.service import GraphService
from inferrer.jobs.service import JobService
from inferrer.settings import InferrerSettings
from inferrer.state.repository import ModelRepository
from inferrer.streams.service import StreamService
from inferrer.watches.service import WatchService
from metrics.definitions import InferrerMetrics
from wire import access


def lifecycle(request: Request) -> ModelLifecycle:
    value: ModelLifecycle = request.app.state.lifecycle
    return value


def nodes(request: Request) -> FleetNodes:
    return lifecycle(request).nodes


def repository(request: Request) -> ModelRepository:
    return lifecycle(request).repository


def name_model(request: Request, name: str) -> None:
    """A prediction request for a stored model is counted for that model too, whatever its answer
    (a refusal at admission included); a name that is not stored adds no series."""
    if repository(request).has(name):
        access.name_model(request.scope, name)


def balancer(request: Request) -> Upstream:
    value: Upstream = request.app.state.balancer
    return value


def prediction(request: Request) -> PredictionService:
    value: PredictionService = request.app.state.prediction
    return value


def admission(request: Request) -> Admission:
    value: Admission = request.app.state.admission
    return value


def settings(request: Request) -> InferrerSettings:
    value: InferrerSettings = request.app.state.settings
    return value


def metrics(request: Request) -> InferrerMetrics:
    value: InferrerMetrics = request.app.state.metrics
    return value


def jobs(request: Request) -> JobService:
    value: JobService = request.app.state.jobs
    return value


def graphs(request: Request) -> GraphService:
    value: GraphService = request.app.state.graphs
    return value


def watches(request: Request) -> WatchService:
    value: WatchService = request.app.state.watches
    return value


def streams(request: Request) -> StreamService:
    value: StreamService = request.app.state.streams
    return value
