"""The stream consumers' settings, from INFERRER_STREAMS_* variables. Streams are on when a broker
URL is set: the launcher sets it when the .env turns streams on (or names a broker elsewhere)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamSettings(BaseSettings):
    """Read by each gateway process."""

    # Empty is unset: compose passes `${VAR:-}` for a variable the .env does not set.
    model_config = SettingsConfigDict(
        env_prefix="INFERRER_STREAMS_", populate_by_name=True, env_ignore_empty=True
    )

    broker_url: SecretStr | None = Field(
        default=None,
        description="The Redis broker, with its password: redis://:PASSWORD@HOST:6379/0 (rediss:// for "
        "TLS). Unset: no stream bindings.",
    )
    claim_idle_s: float = Field(
        default=30.0,
        gt=0,
        description="A message read but not settled for this long (its consumer died or hung) is taken "
        "by another consumer; a live consumer keeps its messages' idle time fresh.",
    )
    batches_in_flight: int = Field(
        default=4, ge=1, le=64, description="Batches one gateway process predicts at once, per binding."
    )
    refresh_s: float = Field(
        default=1.0, gt=0, description="How often a gateway process reads the bindings and their figures."
    )

    @model_validator(mode="after")
    def _claims_outlast_refreshes(self) -> StreamSettings:
        if self.claim_idle_s < 2 * self.refresh_s:
            raise ValueError("INFERRER_STREAMS_CLAIM_IDLE_S must be at least 2 x INFERRER_STREAMS_REFRESH_S")
        return self

    @property
    def enabled(self) -> bool:
        return self.broker_url is not None


# Every variable of the stream consumers, as the gateway reads it (compose and Swarm pass these).
STREAM_VARIABLES = tuple(f"INFERRER_STREAMS_{name.upper()}" for name in StreamSettings.model_fields)
