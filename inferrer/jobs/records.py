"""What the job store holds, as typed records: a job with its plan (what was submitted, checked and
planned, kept as JSON and parsed once when read), its partitions, and what each one wrote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter

from datafiles.formats import InputFormat, OutputFormat, output_format
from wire.job_answers import UNFINISHED, InlineResult, JobStatus
from wire.partition_calls import OnBadRows, PredictionKind

PartitionStatus = Literal["pending", "running", "done", "failed"]
_STORED = ConfigDict(frozen=True, populate_by_name=True)


def _kind() -> Any:
    """The prediction kind, read also as `output`: its name in rows stored before this release."""
    return Field(default="predict", validation_alias=AliasChoices("prediction", "output"))


class InlinePlan(BaseModel):
    """An async prediction: its rows, predicted by the gateway's own predict path."""

    model_config = _STORED

    kind: Literal["inline"] = "inline"
    prediction: PredictionKind = _kind()
    instances: list[list[Any]] | None = None
    records: list[dict[str, Any]] | None = None
    sha256: str
    max_attempts: int = 3  # plans stored before inline jobs took the submission's
    graph: str | None = None  # an inference graph's job: its rows go through the graph
    graph_version: str | None = None
    traceparent: str | None = None  # of its submission, when traced: its partitions' parent

    def body(self) -> bytes:
        return predict_body(self.prediction, self.instances, self.records)


class FilePlan(BaseModel):
    """A file job: its input's partitions read by the nodes, their parts written beside each other
    (or, with `assemble_to`, a watch's, joined into that one file once all are done)."""

    model_config = _STORED

    kind: Literal["file"] = "file"
    prediction: PredictionKind = _kind()
    input: str
    format: InputFormat
    header: list[str] | None
    output_location: str
    output_format: OutputFormat | None = None  # as submitted; see `out_format`
    on_bad_rows: OnBadRows
    max_attempts: int
    size: int
    assemble_to: str | None = None
    sha256: str
    graph: str | None = None  # an inference graph's job: the nodes ask the gateway to run it
    graph_version: str | None = None
    traceparent: str | None = None  # of its submission, when traced: its partitions' parent

    @property
    def out_format(self) -> OutputFormat:
        return output_format(self.format, self.output_format)


def predict_body(
    prediction: PredictionKind, instances: list[list[Any]] | None, records: list[dict[str, Any]] | None
) -> bytes:
    """An inline job's predict body: what `POST .../predict` would have received."""
    rows = {"instances": instances} if instances is not None else {"records": records}
    return orjson.dumps({**rows, "output": prediction})


Plan = Annotated[InlinePlan | FilePlan, Field(discriminator="kind")]
plan_adapter: TypeAdapter[InlinePlan | FilePlan] = TypeAdapter(Plan)


class Span(BaseModel):
    """A partition of a file: a byte range (JSON lines, CSV) or a row group (parquet)."""

    model_config = _STORED

    start: int = 0
    end: int = 0
    row_group: int = 0
    rows: int | None = None  # a row group's


class PartOutput(BaseModel):
    """What a done partition wrote (a file job's part), or an inline job's answer."""

    model_config = _STORED

    rows: int
    location: str | None = None
    sha256: str | None = None
    node: str | None = None
    attempt: int = 1  # the partition's attempt that wrote it (2 and more: retried)
    answer: InlineResult | None = None


class OutputManifest(BaseModel):
    """A file job's result: its `_manifest.json` (`manifest` names it), or a watch's job's one
    output file (`errors`: its skipped rows' file, if any)."""

    model_config = _STORED

    job: str
    model: str
    version: str
    sha256: str
    input: str
    format: InputFormat
    output: str
    parts: list[PartOutput]
    rows: int
    bad_rows: int
    manifest: str | None = None
    errors: str | None = None


JobResult = InlineResult | OutputManifest


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    model: str
    version: str
    plan: InlinePlan | FilePlan
    partitions_total: int
    result: JobResult | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    deadline: float

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        """A stored job, its plan and result parsed."""
        plan = plan_adapter.validate_python(row["spec"])
        result: InlineResult | OutputManifest | None = None
        if row["result"] is not None:
            kind = InlineResult if plan.kind == "inline" else OutputManifest
            result = kind.model_validate(row["result"])
        return cls(
            id=row["id"], status=row["status"], model=row["model"], version=row["version"], plan=plan,
            partitions_total=row["partitions_total"], result=result, error=row["error"],
            created=row["created"], started=row["started"], finished=row["finished"],
            deadline=row["deadline"],
        )  # fmt: skip


@dataclass(frozen=True)
class Partition:
    job_id: str
    idx: int
    span: Span
    status: PartitionStatus
    attempts: int
    rows_done: int | None
    rows_failed: int | None
    output: PartOutput | None
    node: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Partition:
        output = row["output"]
        return cls(
            job_id=row["job_id"], idx=row["idx"], span=Span.model_validate(row["spec"]),
            status=row["status"], attempts=row["attempts"], rows_done=row["rows_done"],
            rows_failed=row["rows_failed"], node=row["node"], error=row["error"],
            output=None if output is None else PartOutput.model_validate(output),
        )  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A partition this gateway runs, under a lease, for its `attempt`-th time."""

    job_id: str
    idx: int
    span: Span
    attempt: int


@dataclass(frozen=True)
class NewJob:
    """A job as planned, before it is stored: queued, its partitions pending."""

    id: str
    model: str
    version: str
    plan: InlinePlan | FilePlan
    spans: list[Span]
    created: float
    deadline: float
