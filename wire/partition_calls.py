"""The contract of a batch job's partition call, inferrer to node (through nginx), declared once.

The node reads the byte range itself from the input location, predicts in bounded chunks, writes
its output part whole (and, when bad rows are skipped, their part under `_errors/`), and answers
what it wrote. Bad rows with `on_bad_rows: fail` answer 422 naming them; the partition fails.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from artifacts.names import SHA256_PATTERN, Segment
from datafiles.formats import InputFormat, OutputFormat

# What a job or a watch predicts for each row: the label, or the label and each class's probability.
PredictionKind = Literal["predict", "predict_proba"]


# What a file's bad rows do: fail their partition (and the job), or go to the errors part.
OnBadRows = Literal["fail", "skip"]


class PartitionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: Segment
    partition: Annotated[int, Field(ge=0)]
    model: Segment
    version: Segment
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]  # the artifact nodes load (as NodePredictBody)
    # The prediction kind (the public APIs call it `prediction`); named so since the first release,
    # which nodes of every release read.
    output: PredictionKind = "predict"
    input: str  # a location: a path in the data directory, or s3://bucket/key
    format: InputFormat
    # JSON lines and CSV: a byte range; parquet: a row group (its output part is JSON lines).
    start: Annotated[int, Field(ge=0)] = 0
    end: Annotated[int, Field(ge=0)] = 0
    row_group: Annotated[int, Field(ge=0)] = 0
    header: list[str] | None = None  # a CSV or parquet file's columns, read once by the planner
    # None: the default of datafiles.formats.output_format (the input's; parquet gives JSON lines).
    output_format: OutputFormat | None = None
    output_part: str  # a location, written whole
    errors_part: str  # a location, written whole when bad rows were skipped
    on_bad_rows: OnBadRows = "fail"
    chunk_rows: Annotated[int, Field(ge=1, le=100_000)] = 2048
    # An inference graph's job: the rows, read as its first model (`model` above) reads them, are
    # predicted by the graph, through the gateway's graph route (a node runs no graph itself).
    graph: Segment | None = None
    graph_version: Segment | None = None


partition_call = TypeAdapter(PartitionCall)


class BadRowReport(BaseModel):
    line: int  # numbered from 1 within the partition
    reason: str


class PartitionDone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    rows: int  # written to output_part
    sha256: str  # of output_part's bytes
    bad_rows: list[BadRowReport]  # skipped (on_bad_rows: skip); written to errors_part
