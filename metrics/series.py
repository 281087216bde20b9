"""Labelled series looked up once, and forgotten when their model version is gone."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any, Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# scikit-learn predicts on a few rows take ~0.1-1 ms; the client's default buckets start at 5 ms.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip


class Series(Generic[M]):
    """A labelled metric's children, looked up once: prometheus_client's `labels()` checks its
    arguments and takes a lock on every call, a cost the hot path pays several times per request.
    `forget()` must follow any `remove()` on the metric, or a child held here would count unseen."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def forget(self) -> None:
        self._children.clear()


def forget_versions(series: Iterable[Series[Any]], stored: Container[tuple[str, str]]) -> None:
    """Remove the series of (model, version) pairs no longer stored: without it every deploy adds
    series that live as long as the process (and in Prometheus's memory)."""
    for labelled in series:
        metric = labelled.metric
        labelled.forget()
        seen = {
            (sample.labels["model"], sample.labels["version"], sample.labels["node"])
            for family in metric.collect()
            for sample in family.samples
        }
        for model, version, node in seen:
            if (model, version) not in stored:
                metric.remove(model, version, node)
