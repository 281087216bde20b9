"""Every metric the fleet exports. Names and labels are a contract with dashboards: change with care."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from metrics.graphs import GraphMetrics
from metrics.model_requests import ModelRequestMetrics
from metrics.series import LATENCY_BUCKETS, Series, forget_versions


class HttpMetrics:
    """Per-route request counts and latency, for any service; and the process's CPU and memory."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.requests = Series(
            Counter(
                "modelfleet_http_requests_total",
                "HTTP requests answered, by route template, method and status",
                ["service", "route", "method", "status"],
                registry=registry,
            )
        )
        self.latency = Series(
            Histogram(
                "modelfleet_http_request_duration_seconds",
                "Time to answer an HTTP request",
                ["service", "route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.in_flight = Gauge(
            "modelfleet_http_requests_in_flight",
            "Requests being answered now",
            ["service"],
            registry=registry,
        ).labels(service)
        self.rejected = Counter(
            "modelfleet_http_rejected_requests_total",
            "Requests answered with an error, by the error's name (InvalidInput, PayloadTooLarge, ...)",
            ["service", "reason"],
            registry=registry,
        ).labels
        self.service = service


class InferrerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.http = HttpMetrics(registry, "inferrer")
        self._generation: object = None
        self.predictions = Series(
            Counter(
                "modelfleet_inferrer_predictions_total",
                "Prediction requests answered through the balancer, by the node that computed them",
                ["model", "version", "node"],
                registry=registry,
            )
        )
        self.upstream_latency = Series(
            Histogram(
                "modelfleet_inferrer_upstream_duration_seconds",
                "Time from sending a predict call upstream to receiving its answer",
                ["model", "version", "node"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )

        self.batch_rows = Series(
            Histogram(
                "modelfleet_inferrer_batch_rows",
                "Rows per upstream predict call after gateway batching",
                ["model"],
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                registry=registry,
            )
        )
        self.batch_wait = Series(
            Histogram(
                "modelfleet_inferrer_batch_wait_seconds",
                "Time a request waited in its batch before the upstream call",
                ["model"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.batch_queue = Series(
            Gauge(
                "modelfleet_inferrer_batch_queue_depth",
                "Requests waiting for a batch, by model",
                ["model"],
                registry=registry,
            )
        )
        self.upstream_retries = Counter(
            "modelfleet_inferrer_upstream_retries_total",
            "Balanced calls sent again after nginx dropped a kept-alive connection",
            registry=registry,
        )
        self.upstream_failures = Counter(
            "modelfleet_inferrer_upstream_failures_total",
            "Balanced calls that failed: timeout, unreachable balancer, or no node could answer",
            ["reason"],
            registry=registry,
        )
        self.node_failures = Counter(
            "modelfleet_inferrer_upstream_node_failures_total",
            "Tries on a node that failed and were retried elsewhere or failed the call, by node and "
            "nginx's status for the try (502 error, 503 refused, 504 timeout)",
            ["node", "status"],
            registry=registry,
        )
        self.predictions_in_flight = Gauge(
            "modelfleet_inferrer_predictions_in_flight",
            "Predictions admitted and not yet answered (beyond the limit, requests answer 503)",
            registry=registry,
        )
        self.cache_hits = Counter(
            "modelfleet_inferrer_prediction_cache_hits_total",
            "Predictions answered from the prediction cache",
            ["model"],
            registry=registry,
        )
        self.cache_misses = Counter(
            "modelfleet_inferrer_prediction_cache_misses_total",
            "Predictions looked up in the prediction cache and not found",
            ["model"],
            registry=registry,
        )
        self.model_requests = ModelRequestMetrics(registry)
        self.jobs = JobMetrics(registry)
        self.watches = WatchMetrics(registry)
        self.graphs = GraphMetrics(registry)

    def follow(self, generation: object, stored: Callable[[], set[tuple[str, str]]]) -> None:
        """Once per change of the repository: forget the series of versions (and models) no longer
        stored."""
        if generation != self._generation:
            self._generation = generation
            versions = stored()
            forget_versions((self.predictions, self.upstream_latency), versions)
            self.model_requests.forget({model for model, _ in versions})


class RuntimeInfo(Collector):
    """`modelfleet_model_runtime_info`: 1 for each stored version, labelled with the runtime its
    nodes run it under (sklearn or onnx); read from the repository at each scrape."""

    def __init__(self, versions: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        self._versions = versions  # (model, version, runtime)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modelfleet_model_runtime_info",
            "Stored model versions by the runtime their nodes run them under",
            labels=["model", "version", "runtime"],
        )
        for model, version, runtime in self._versions():
            family.add_metric([model, version, runtime], 1)
        yield family


class JobMetrics:
    """Batch and async jobs, as one gateway process saw them (`jobs` counts every gateway's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "modelfleet_inferrer_jobs",
            "Jobs in the job store by status (every gateway's, as of this process's last look)",
            ["status"],
            registry=registry,
        )
        self.finished = Counter(
            "modelfleet_inferrer_jobs_finished_total",
            "Jobs this process finished, by final status",
            ["status"],
            registry=registry,
        )
        for status in ("succeeded", "failed", "cancelled"):  # at 0 from the start: increase() sees the first
            self.finished.labels(status)
        self.partitions = Counter(
            "modelfleet_inferrer_job_partitions_total",
            "Partition attempts by outcome: done, retried (a node's reason), failed (for good)",
            ["outcome"],
            registry=registry,
        )
        self.rows = Counter(
            "modelfleet_inferrer_job_rows_total",
            "Rows predicted by jobs (rate(): rows per second)",
            registry=registry,
        )
        self.duration = Histogram(
            "modelfleet_inferrer_job_duration_seconds",
            "From a job's submission to its end",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
            registry=registry,
        )


class WatchMetrics:
    """Watched folders' files (every gateway's, as of this process's last look)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.files = Gauge(
            "modelfleet_inferrer_watch_files",
            "Files each watch has seen, by state: pending (queued), running, done, failed (dead letter)",
            ["watch", "state"],
            registry=registry,
        )
        self.detected = Counter(
            "modelfleet_inferrer_watch_files_detected_total",
            "File versions this process found whole in a watched place and queued",
            registry=registry,
        )


class ModelhostMetrics:
    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self.http = HttpMetrics(registry, "modelhost")
        self.node = node
        self.predict_latency = Series(
            Histogram(
                "modelfleet_modelhost_predict_duration_seconds",
                "Time the estimator spent in predict/predict_proba",
                ["model", "version", "node"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.predicted_rows = Series(
            Counter(
                "modelfleet_modelhost_predicted_rows_total",
                "Rows predicted",
                ["model", "version", "node"],
                registry=registry,
            )
        )
        self.load_duration = Series(
            Histogram(
                "modelfleet_modelhost_model_load_duration_seconds",
                "Time to fetch (when not cached), verify and load a model",
                ["model", "version", "node"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.cold_start = Series(
            Histogram(
                "modelfleet_modelhost_cold_start_duration_seconds",
                "Time a request waited for its model to load (load on demand)",
                ["model", "version", "node"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.loaded_models = Gauge(
            "modelfleet_modelhost_loaded_models",
            "Model versions currently loaded on the node",
            ["node"],
            registry=registry,
        )
        self.ready = Gauge(
            "modelfleet_modelhost_ready",
            "1 while the node is ready: synced with the gateway, its models loaded, not draining",
            ["node"],
            registry=registry,
        ).labels(node)
        self.draining = Gauge(
            "modelfleet_modelhost_draining", "1 once the node is draining to leave the fleet", ["node"],
            registry=registry,
        ).labels(node)  # fmt: skip

    def forget(self, stored: Container[tuple[str, str]]) -> None:
        """Forget the series of versions no longer stored."""
        forget_versions(
            (self.predict_latency, self.predicted_rows, self.load_duration, self.cold_start), stored
        )
