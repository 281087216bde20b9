"""The gateway's view of each model: every prediction request whose model is stored (REST, Open
Inference Protocol, SageMaker), from its first byte to its answer, and the ones answered with an
error. Labelled by model only, and only for stored models: an unknown name in a URL adds no series,
and a deleted model's series go with it."""

from __future__ import annotations

from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Histogram

from metrics.series import LATENCY_BUCKETS, Series


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

    def observe(self, model: str, status: int, seconds: float) -> None:
        self.latency(model).observe(seconds)
        if status >= 400:
            self.errors(model, str(status)).inc()

    def forget(self, stored: Container[str]) -> None:
        """Remove the series of models no longer stored."""
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
