"""One trace per request, with OpenTelemetry, for both services.

A request's W3C `traceparent` (the client's, or started here) is the parent of the service's server
span; calls to other services carry the current span's `traceparent` (the gateway's upstream call
through nginx, which passes the header on, to the node). Sampling is decided once, where a request
enters the fleet: one whose `traceparent` says sampled is always traced, one that says not sampled
never is, and one without a context is traced with probability `MODELFLEET_TRACING_SAMPLE_RATIO`
at the gateway. A node starts no trace of its own: it traces what arrives sampled.

A request that is not traced costs no span at all: `span()` hands back one shared do-nothing object
and no header is written. Off (no `MODELFLEET_TRACING_OTLP_ENDPOINT`) no tracer exists either.
Spans are exported over OTLP/HTTP (protobuf) in batches, from a thread of each process.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wire.tracing_settings import TracingSettings

if TYPE_CHECKING:  # the SDK and the exporter are loaded only when tracing is on (install)
    from opentelemetry.sdk.trace import TracerProvider

Context = otel_context.Context
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = {b"traceparent", b"tracestate"}


class _Off:
    """The span of what is not traced: enters and exits, records nothing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_root_ratio = 0.0  # the share of requests without a context that start a trace here


def install(service: str, instance: str, settings: TracingSettings, starts_traces: bool = True) -> None:
    """Start tracing in this process (once; later calls keep the first tracer), when an endpoint
    is set. `service`: inferrer or modelhost; `instance`: the gateway or node id; `starts_traces`:
    False for a node, which traces only what arrives sampled."""
    global _tracer, _provider, _root_ratio
    if settings.otlp_endpoint is None or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    resource = Resource.create(
        {"service.name": f"modelfleet-{service}", "service.instance.id": f"{instance}/{os.getpid()}"}
    )
    _root_ratio = settings.sample_ratio if starts_traces else 0.0
    # Every span made is recorded: whether to make it was decided first (_sampled_out).
    _provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces", timeout=5)
    _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    _tracer = _provider.get_tracer("modelfleet")


def shutdown() -> None:
    """Export what is left and stop (at the end of the process's lifespan)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
    links: Sequence[Context | None] = (),
    start_ns: int | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    root: bool = False,
) -> AbstractContextManager[Any]:
    """A span, current while its `with` block runs: a child of `parent` (default: the current
    span), linked to the spans current in `links`; nothing at all unless that parent is sampled.
    `root`: without a parent, start a trace (at the sampling ratio), as work that no request
    started does (a watch's job)."""
    if _tracer is None or _sampled_out(parent, root):
        return _OFF
    linked = [
        Link(span_context)
        for c in links
        if c is not None and (span_context := trace.get_current_span(c).get_span_context()).is_valid
    ]
    return _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=linked, start_time=start_ns
    )


def client_span(name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """The span of a call to another service (whose headers then carry `inject()`'s traceparent)."""
    return span(name, attributes, kind=SpanKind.CLIENT)


def server_span(name: str, headers: Iterable[tuple[bytes, bytes]]) -> AbstractContextManager[Any]:
    """The span of a request this service answers: a child of its `traceparent` when that says
    sampled; without one, a new trace at the sampling ratio."""
    if _tracer is None:
        return _OFF
    carrier = {
        key.decode("latin-1"): value.decode("latin-1") for key, value in headers if key in _TRACE_HEADERS
    }
    parent = _PROPAGATOR.extract(carrier) if carrier else Context()
    if _sampled_out(parent, root=True):
        return _OFF
    return _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER)


def _sampled_out(parent: Context | None, root: bool) -> bool:
    """Whether no span is to be made: its parent (given, else the current span) is not sampled,
    or it has none and is no root, or it is a root that the draw leaves out."""
    parent_context = trace.get_current_span(parent).get_span_context()
    if parent_context.is_valid:
        return not parent_context.trace_flags.sampled
    return not root or random.random() >= _root_ratio


def sampled(context: Context | None) -> bool:
    """Whether the span current in `context` is sampled (False: tracing off, or no span)."""
    return context is not None and trace.get_current_span(context).get_span_context().trace_flags.sampled


def current() -> Context | None:
    """The current trace context, to make children of elsewhere (another task, a later time)."""
    return otel_context.get_current() if _tracer is not None else None


def traceparent() -> str | None:
    """The current span's W3C traceparent when it is sampled, to store with work done later (a
    job's partitions)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def context_of(stored: str | None) -> Context | None:
    """The trace context a stored traceparent names (None: none)."""
    if _tracer is None or stored is None:
        return None
    return _PROPAGATOR.extract({"traceparent": stored})


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` to a call's headers, when it is sampled."""
    if _tracer is not None and trace.get_current_span().get_span_context().trace_flags.sampled:
        _PROPAGATOR.inject(headers)


def mark_failed(failed: Any, description: str) -> None:
    """Mark a span as failed (an answer of the fleet's fault, 5xx)."""
    failed.set_status(trace.Status(trace.StatusCode.ERROR, description))
