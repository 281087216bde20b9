"""Inference graphs' metrics: what each graph and each of its steps costs, and what the graph
itself adds to its model calls (its overhead), so that an operator sees what a graph costs."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from metrics.series import Series

# A graph's own work (routing, combining, joining) takes microseconds; its calls, milliseconds.
OVERHEAD_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class GraphMetrics:
    """Every series is labelled by its graph first: a deleted graph's series go with it (`forget`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Series(
            Counter(
                "modelfleet_graph_requests_total",
                "Graph predictions answered, by graph and outcome (ok, error)",
                ["graph", "outcome"],
                registry=registry,
            )
        )
        self.duration = Series(
            Histogram(
                "modelfleet_graph_duration_seconds",
                "Time to run a graph, from its first step to its answer",
                ["graph"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            )
        )
        self.overhead = Series(
            Histogram(
                "modelfleet_graph_overhead_seconds",
                "Time a graph run spent with no model call under way: the graph's own cost",
                ["graph"],
                buckets=OVERHEAD_BUCKETS,
                registry=registry,
            )
        )
        self.step_duration = Series(
            Histogram(
                "modelfleet_graph_step_duration_seconds",
                "Time of one step of a graph (a model call, an ensemble's calls together, a branch's steps)",
                ["graph", "step"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            )
        )
        self.step_errors = Series(
            Counter(
                "modelfleet_graph_step_errors_total",
                "Graph steps that failed (the graph answered an error naming the step)",
                ["graph", "step"],
                registry=registry,
            )
        )
        self.branches = Series(
            Counter(
                "modelfleet_graph_split_branch_total",
                "Requests each branch of a split step took",
                ["graph", "step", "branch"],
                registry=registry,
            )
        )

    def forget(self, graph: str) -> None:
        """Remove a deleted graph's series: without it every graph ever deployed stays in /metrics
        (and in Prometheus's memory) as long as the process lives."""
        labelled: list[Series[Any]] = [
            self.requests,
            self.duration,
            self.overhead,
            self.step_duration,
            self.step_errors,
            self.branches,
        ]
        for series in labelled:
            series.forget()
            names = series.metric._labelnames  # the label order remove() takes
            seen = {
                tuple(sample.labels[n] for n in names)
                for family in series.metric.collect()
                for sample in family.samples
                if sample.labels.get("graph") == graph
            }
            for values in seen:
                series.metric.remove(*values)
