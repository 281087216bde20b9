"""The autoscaler's settings, from INFERRER_AUTOSCALE_* variables (`deploy/.env` or `modelfleet up
--min-nodes N --max-nodes M`). Autoscaling is on when the maximum is above the minimum."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferrer.scaling.policy import Limits


class AutoscaleSettings(BaseSettings):
    """Read by each gateway process; the launcher reads the minimum and maximum too."""

    # Empty is unset: compose passes `${VAR:-}` for a variable the .env does not set.
    model_config = SettingsConfigDict(
        env_prefix="INFERRER_AUTOSCALE_", populate_by_name=True, env_ignore_empty=True
    )

    min_nodes: int = Field(
        default=0, ge=0, description="Fewest nodes the autoscaler keeps (0: none when idle)."
    )
    max_nodes: int = Field(
        default=0, ge=0, description="Most nodes it starts; autoscaling is on when this exceeds the minimum."
    )
    target_in_flight: float = Field(
        default=8.0, gt=0, description="Online predictions one node should carry at once."
    )
    keep_warm_s: float = Field(
        default=60.0, ge=0, description="How long the fleet must need fewer nodes before one stops."
    )
    up_window_s: float = Field(
        default=6.0, ge=0, description="In flight per node above the target this long: one more node."
    )
    down_window_s: float = Field(
        default=30.0, ge=0, description="The need a scale-down weighs is its peak over this window."
    )
    cooldown_s: float = Field(default=5.0, ge=0, description="Least time between two changes of the count.")
    interval_s: float = Field(default=0.5, gt=0, description="How often signals are published and weighed.")
    lease_s: float = Field(
        default=5.0,
        gt=0,
        description="The deciding gateway process holds the store's lease this long; another takes over "
        "when it is not renewed.",
    )

    @property
    def limits(self) -> Limits:
        return Limits(
            self.min_nodes, self.max_nodes, self.target_in_flight, self.keep_warm_s,
            self.up_window_s, self.down_window_s, self.cooldown_s,
        )  # fmt: skip

    @model_validator(mode="after")
    def _lease_outlives_ticks(self) -> AutoscaleSettings:
        if self.max_nodes and self.max_nodes < self.min_nodes:
            raise ValueError("INFERRER_AUTOSCALE_MAX_NODES must be at least INFERRER_AUTOSCALE_MIN_NODES")
        if self.lease_s < 3 * self.interval_s:
            raise ValueError("INFERRER_AUTOSCALE_LEASE_S must be at least 3 x INFERRER_AUTOSCALE_INTERVAL_S")
        return self


# Every variable of the autoscaler, as the gateway reads it (compose and Swarm pass these from the .env).
AUTOSCALE_VARIABLES = tuple(f"INFERRER_AUTOSCALE_{name.upper()}" for name in AutoscaleSettings.model_fields)
