"""One trace per request, with OpenTelemetry, for both services.

A request's W3C `traceparent` (the client's, or started here) is the parent of the service's server
span; calls to other services carry the current span's `traceparent` (the gateway's upstream call
through nginx, which passes the header on, to the node). Sampling is parent-based: a request that
arrives with a sampled trace context is always traced, one without is traced with probability
`MODELFLEET_TRACING_SAMPLE_RATIO`.

Off unless `MODELFLEET_TRACING_OTLP_ENDPOINT` is set: then no tracer exists, `span()` hands back one
shared do-nothing object and no header is read or written, so tracing off costs one global look-up
per span site. Spans are exported over OTLP/HTTP (protobuf) in batches, from a thread of each process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wire.tracing_settings import TracingSettings

Context = otel_context.Context
_PROPAGATOR = TraceContextTextMapPropagator()


class _Off:
    """The span of tracing off: enters and exits, records nothing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


def install(service: str, instance: str, settings: TracingSettings) -> None:
    """Start tracing in this process (once; later calls keep the first tracer), when an endpoint
    is set. `service`: inferrer or modelhost; `instance`: the gateway or node id."""
    global _tracer, _provider
    if settings.otlp_endpoint is None or _provider is not None:
        return
    resource = Resource.create(
        {"service.name": f"modelfleet-{service}", "service.instance.id": f"{instance}/{os.getpid()}"}
    )
    _provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio))
    )
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces", timeout=5)
    _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    _tracer = _provider.get_tracer("modelfleet")


def shutdown() -> None:
    """Export what is left and stop (at the end of the process's lifespan)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
    links: Sequence[Context | None] = (),
    start_ns: int | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Any]:
    """A span, current while its `with` block runs: a child of `parent` (default: the current
    span), linked to the spans current in `links`."""
    if _tracer is None:
        return _OFF
    linked = [
        Link(context)
        for c in links
        if c is not None and (context := trace.get_current_span(c).get_span_context()).is_valid
    ]
    return _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=linked, start_time=start_ns
    )


def client_span(name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """The span of a call to another service (whose headers then carry `inject()`'s traceparent)."""
    return span(name, attributes, kind=SpanKind.CLIENT)


def server_span(name: str, headers: Iterable[tuple[bytes, bytes]]) -> AbstractContextManager[Any]:
    """The span of a request this service answers: a child of its `traceparent`, if it has one."""
    if _tracer is None:
        return _OFF
    carrier = {
        key.decode("latin-1"): value.decode("latin-1") for key, value in headers if key in _TRACE_HEADERS
    }
    parent = _PROPAGATOR.extract(carrier) if carrier else Context()
    return _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER)


_TRACE_HEADERS = {b"traceparent", b"tracestate"}


def current() -> Context | None:
    """The current trace context, to make children of elsewhere (another task, a later time)."""
    return otel_context.get_current() if _tracer is not None else None


def traceparent() -> str | None:
    """The current span's W3C traceparent, to store with work done later (a job's partitions)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(stored: str | None) -> Context | None:
    """The trace context a stored traceparent names (None: a new trace)."""
    if _tracer is None or stored is None:
        return None
    return _PROPAGATOR.extract({"traceparent": stored})


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` to a call's headers."""
    if _tracer is not None:
        _PROPAGATOR.inject(headers)


def mark_failed(failed: Any, description: str) -> None:
    """Mark a span as failed (an answer of the fleet's fault, 5xx)."""
    failed.set_status(trace.Status(trace.StatusCode.ERROR, description))
