"""The success bodies of the gateway's job routes (inferrer/api/jobs.py), as its document declares them."""

from __future__ import annotations

from typing import Any, Literal

from wire.openapi import Answer
from wire.partition_calls import PredictionKind

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")  # a job in these may still change


class JobAccepted(Answer):
    id: str
    status: JobStatus
    partitions: int


class PartitionCounts(Answer):
    total: int
    done: int
    failed: int


class RowCounts(Answer):
    done: int
    failed: int


class RowError(Answer):
    """A bad row: its partition, its line within that partition (from 1), and why."""

    partition: int
    line: int
    reason: str


class JobOutput(Answer):
    location: str  # the parts' folder; a watch's job: its one output file
    manifest: str | None  # None: a watch's job


class JobView(Answer):
    id: str
    status: JobStatus
    model: str  # for an inference graph's job: its first model, which its rows are read as
    version: str
    graph: str | None = None  # an inference graph's job: the graph and its version
    graph_version: str | None = None
    kind: Literal["inline", "file"]
    prediction: PredictionKind
    partitions: PartitionCounts
    rows: RowCounts
    errors: list[RowError]
    error: str | None
    output: JobOutput | None
    created: str
    started: str | None
    finished: str | None


class JobList(Answer):
    jobs: list[JobView]


class InlineResult(Answer):
    """An inline job's result: as `POST /api/v1/models/{name}/predict` answers."""

    model: str  # an inference graph's job: the graph, and its version
    version: str
    predictions: list[Any]
    node: str  # an inference graph's job: "graph" (its steps ran on several nodes)
