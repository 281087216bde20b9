"""The stream bindings' metrics: messages by outcome, produce-to-settle latency, and each binding's
state in the broker (the same in every gateway process: take one, or the max)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "modelfleet_stream_messages_total",
            "Stream messages by binding and outcome: output, dead_letter, converged (kept in a converge "
            "group), duplicate (settled before by another consumer), retried (its batch failed and waits), "
            "taken_over (left by a consumer that stopped)",
            ["binding", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelfleet_stream_latency_seconds",
            "From a message's production (its id's time) to its settling, by binding",
            ["binding"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "modelfleet_stream_lag", "Input messages its consumer group has not read yet", ["binding"],
            registry=registry,
        )  # fmt: skip
        self.pending = Gauge(
            "modelfleet_stream_pending", "Messages read but not yet settled", ["binding"], registry=registry
        )
        self.dead_letters = Gauge(
            "modelfleet_stream_dead_letters", "Messages in the binding's dead-letter stream", ["binding"],
            registry=registry,
        )  # fmt: skip
        self.per_second = Gauge(
            "modelfleet_stream_output_per_second", "Output messages per second (last 10 s, every gateway)",
            ["binding"], registry=registry,
        )  # fmt: skip
        self.open_groups = Gauge(
            "modelfleet_stream_open_groups", "Converge groups waiting for more messages", ["binding"],
            registry=registry,
        )  # fmt: skip

    def forget(self, binding: str) -> None:
        for gauge in (self.lag, self.pending, self.dead_letters, self.per_second, self.open_groups):
            with contextlib.suppress(KeyError):
                gauge.remove(binding)
