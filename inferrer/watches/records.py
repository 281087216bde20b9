"""What the watch store holds, as typed records: a watch (its spec parsed once when read) and each
file version it has seen, with the state of its processing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from inferrer.watches.spec import WatchSpec
from wire.job_answers import JobStatus
from wire.watch_answers import FileState

FILE_STATES: tuple[FileState, ...] = ("pending", "running", "done", "failed")


@dataclass(frozen=True)
class Watch:
    spec: WatchSpec
    paused: bool
    created: float
    error: str | None  # why its input cannot be listed; None once it can

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class WatchedFile:
    """One version of a file in a watched place, and its processing: `pending` → `running` (a
    claim, then its job) → `done`, or `failed` once its attempts are spent."""

    id: int
    watch: str
    name: str
    identity: str  # size and mtime, or size and ETag
    size: int
    state: FileState
    version: str | None  # the model's, fixed when the file is picked up
    output_location: str | None  # its output file, reserved when picked up, for good
    job_id: str | None  # the latest attempt's
    attempts: int
    not_before: float
    submit_until: float | None  # while its job is being made: when that claim lapses
    claim: str | None  # who makes its job
    rows: int | None
    error: str | None
    seen: float
    updated: float

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WatchedFile:
        values = {field.name: row[field.name] for field in fields(cls) if field.name != "output_location"}
        return cls(**values, output_location=row["output"])


@dataclass(frozen=True)
class EndedFile:
    """A running file whose job has finished."""

    file: WatchedFile
    job_status: JobStatus
    job_rows: int | None  # the rows its output holds, when its job succeeded
    job_error: str | None
