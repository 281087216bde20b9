"""Typed access to what the lifespan put on app.state."""

from __future__ import annotations

from fastapi import Request

from inferrer.admission import Admission
from inferrer.client import ModelHostClientManager
from inferrer.prediction import PredictionService
from inferrer.repository import ModelRepository
from inferrer.settings import InferrerSettings
from metrics.definitions import InferrerMetrics


def manager(request: Request) -> ModelHostClientManager:
    value: ModelHostClientManager = request.app.state.manager
    return value


def repository(request: Request) -> ModelRepository:
    value: ModelRepository = request.app.state.repository
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
