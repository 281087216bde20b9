"""The autoscaler's metrics: the node count it wants and has, its decisions, and every cold start.

`modelfleet_autoscaler_desired_nodes` is also the signal a Kubernetes HorizontalPodAutoscaler
scales the nodes' StatefulSet on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A node process starts in seconds; a container on a cold host, tens of seconds.
COLD_START_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)


class ScalingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.desired = Gauge(
            "modelfleet_autoscaler_desired_nodes", "Nodes the autoscaler wants now", registry=registry
        )
        self.max_nodes = Gauge(
            "modelfleet_autoscaler_max_nodes", "The most nodes the autoscaler may run", registry=registry
        )
        self.nodes = Gauge(
            "modelfleet_autoscaler_nodes", "Nodes in the fleet (ready or starting) at the last decision",
            registry=registry,
        )  # fmt: skip
        self.events = Counter(
            "modelfleet_autoscaler_events_total",
            "Scale decisions by direction (up, down) and rule, and reported node starts that failed",
            ["direction", "rule"],
            registry=registry,
        )
        self.cold_start = Histogram(
            "modelfleet_autoscaler_cold_start_seconds",
            "A started node's time until it is ready with the active models loaded",
            buckets=COLD_START_BUCKETS,
            registry=registry,
        )
        self.held = Gauge(
            "modelfleet_predictions_held", "Predictions waiting at the gateway for a first node",
            registry=registry,
        )  # fmt: skip
