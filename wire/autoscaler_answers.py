"""The bodies of the autoscaler's routes (inferrer/api/autoscaler.py): what it weighs and decided,
and what the launcher reports of each node start and stop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wire.openapi import Answer

ReportOutcome = Literal["started", "start_failed", "stopped"]
EventKind = Literal["up", "down", "started", "start_failed", "stopped"]


class ScaleSignals(Answer):
    """Summed over every gateway process that published within the last few intervals."""

    in_flight: int  # online predictions under way
    held: int  # online predictions waiting for a first node
    batch_queued: int  # rows waiting in the gateways' batchers
    partitions_waiting: int  # job partitions queued or under way
    predict_s: float | None  # moving average of a node's answer time
    cold_start_s: float | None  # moving average of a node's start until it is ready with the models
    expected_wait_s: float | None  # new online work's wait for a free slot (None: unbounded)


class ScaleEventView(Answer):
    at: float  # Unix time
    kind: EventKind
    reason: str
    nodes_from: int | None
    nodes_to: int | None
    node: str | None
    seconds: float | None  # a start's time to ready


class AutoscalerView(Answer):
    enabled: bool  # max_nodes above min_nodes
    min_nodes: int
    max_nodes: int
    target_in_flight: float
    keep_warm_s: float
    up_window_s: float
    down_window_s: float
    cooldown_s: float
    lease_s: float  # the deciding process's lease: another decides within it when that one dies
    desired: int | None  # None: nothing decided yet
    nodes: int  # nodes in the fleet now (ready or starting)
    ready_nodes: int
    decider: str | None  # the gateway process holding the lease
    signals: ScaleSignals
    events: list[ScaleEventView]  # newest first


class NodeReport(BaseModel):
    """A node start or stop, reported by what runs the nodes (the launcher)."""

    # Strict: the document says a number, so `false` or "4" is refused, not read as one.
    model_config = ConfigDict(extra="forbid", strict=True)

    node: str = Field(min_length=1, max_length=80)
    outcome: ReportOutcome
    seconds: float = Field(ge=0, le=86_400, description="start until ready with the active models")
    error: str = Field(default="", max_length=2000)


class ReportRecorded(Answer):
    recorded: bool
