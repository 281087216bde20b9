"""Tracing's settings, from MODELFLEET_TRACING_* variables (apart from wire/tracing.py, so that the
launcher reads the names without loading OpenTelemetry)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TracingSettings(BaseSettings):
    """Where spans go, and how many requests are traced."""

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_TRACING_", env_ignore_empty=True)

    otlp_endpoint: str | None = Field(
        default=None,
        description="The OTLP/HTTP receiver spans are sent to (a collector, Jaeger, Tempo: "
        "http://HOST:4318; /v1/traces is added). Unset: no tracing, at no cost.",
    )
    sample_ratio: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="The share of requests traced that arrive without a trace context. A request "
        "whose `traceparent` says sampled is always traced, one that says not sampled never is.",
    )


# Every variable of the tracing settings (the launcher and the stacks pass these to each service).
TRACING_VARIABLES = tuple(f"MODELFLEET_TRACING_{name.upper()}" for name in TracingSettings.model_fields)
