"""The gateway's view of each model: every prediction request whose model is stored (REST, Open
Inference Protocol, SageMaker), from its first byte to its answer, and the ones answered with an
error. Labelled by model only, and only for stored models: an unknown name in a URL adds no series,
and a deleted model's series go with it."""

from __future__ import annotations

from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Histogram

from metrics.series import LATENCY_BUCKETS, Series

_FLEET_ERRORS = ("500", "502", "503", "504")  # what the gateway answers when the fleet fails


class ModelRequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Series(
            Histogram(
                "modelfleet_inferrer_model_request_duration_seconds",
                "Prediction requests by model, from arrival at the gateway to the answer (any status)",
                ["model"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.errors = Series(
            Counter(
                "modelfleet_inferrer_model_request_errors_total",
                "Prediction requests by model answered with an error status (4xx: the request's, "
                "5xx: the fleet's)",
                ["model", "status"],
                registry=registry,
            )
        )
        self._seen: set[str] = set()  # models whose 5xx series exist

    def observe(self, model: str, status: int, seconds: float) -> None:
        if model not in self._seen:  # the fleet's errors start at 0: rate() sees the first one
            self._seen.add(model)
            for fleet_status in _FLEET_ERRORS:
                self.errors(model, fleet_status)
        self.latency(model).observe(seconds)
        if status >= 400:
            self.errors(model, str(status)).inc()

    def forget(self, stored: Container[str]) -> None:
        """Remove the series of models no longer stored."""
        self._seen.clear()
        for labelled in (self.latency, self.errors):
            labelled.forget()
            seen = {
                tuple(sample.labels[name] for name in ("model", "status") if name in sample.labels)
                for family in labelled.metric.collect()
                for sample in family.samples
            }
            for labels in seen:
                if labels[0] not in stored:
                    labelled.metric.remove(*labels)
