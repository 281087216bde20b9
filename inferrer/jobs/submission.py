"""A job as submitted (`POST /api/v1/jobs`), checked and planned into partitions before it is stored.

Inline rows (`instances` or `records`) make an async prediction: one partition, predicted by the
gateway's own predict path. A file (`input`) is split into newline-aligned byte ranges that nodes
read themselves. Either way the model's version is fixed at submission (the active one by default)
and pinned against retention until the job has finished.
"""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import PurePosixPath
from typing import Annotated, Any, BinaryIO, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

from artifacts.manifest import Manifest
from artifacts.schema import JsonInt
from datafiles.locations import Location, LocationError, Storage
from datafiles.partitions import plan_lines
from inferrer.errors import InputNotFound, InvalidInput, InvalidLocation, OutputExists

NAME = r"^[A-Za-z0-9._-]{1,64}$"
MAX_PARTITIONS = 20_000  # a job's partitions live in the store; beyond this, larger ones
InputFormat = Literal["jsonl", "csv", "parquet"]
OutputFormat = Literal["jsonl", "csv"]
FORMAT_BY_SUFFIX: dict[str, InputFormat] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"
}  # fmt: skip
_CELL = Annotated[Any, Field(json_schema_extra={"type": ["number", "null"]})]
_FIELD = Annotated[Any, Field(json_schema_extra={"type": ["number", "string", "boolean", "null"]})]
_Instances = Annotated[list[Annotated[list[_CELL], Field(min_length=1)]], Field(min_length=1)]
_Records = Annotated[list[Annotated[dict[str, _FIELD], Field(min_length=1)]], Field(min_length=1)]
_Location = Annotated[str, Field(min_length=1, max_length=1024)]


def _alone(key: str, *others: str) -> dict[str, Any]:
    return {"required": [key], "not": {"anyOf": [{"required": [other]} for other in others]}}


# Exactly one input; `format` and `output_location` only with a file. Declared for the document
# (JSON Schema), checked again by the validators below.
_ONE_INPUT: dict[str, Any] = {
    "oneOf": [
        _alone("instances", "records", "input", "format", "output_location", "output_format"),
        _alone("records", "instances", "input", "format", "output_location", "output_format"),
        _alone("input", "instances", "records"),
    ]
}


class GivenOrLeftOut(BaseModel):
    """A request body whose optional fields are given or left out, never null."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(value is None for value in data.values()):
            raise ValueError("leave a field out rather than send null")
        return data


class JobSubmission(GivenOrLeftOut):
    """`model` and exactly one input: `instances` or `records` inline, or `input`, a file. A field
    is given or left out, never null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_INPUT)

    model: Annotated[str, Field(pattern=NAME)]
    version: SkipJsonSchema[None] | Annotated[str, Field(pattern=NAME)] = None  # default: the active
    output: Literal["predict", "predict_proba"] = "predict"
    instances: SkipJsonSchema[None] | _Instances = None
    records: SkipJsonSchema[None] | _Records = None
    input: SkipJsonSchema[None] | _Location = None
    format: SkipJsonSchema[None] | InputFormat = None  # default: from the suffix
    output_location: SkipJsonSchema[None] | _Location = None
    # Default: as the input (parquet: JSON lines). CSV output takes CSV or parquet input.
    output_format: SkipJsonSchema[None] | OutputFormat = None
    # A node holds a partition's bytes, rows and output at once: 256 MiB at most.
    partition_bytes: JsonInt = Field(default=8 * 2**20, ge=4096, le=2**28)
    on_bad_rows: Literal["fail", "skip"] = "fail"
    max_attempts: JsonInt = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_input(self) -> JobSubmission:
        given = [k for k in ("instances", "records", "input") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of "instances", "records" or "input"')
        if self.input is None and (self.format or self.output_location or self.output_format):
            raise ValueError('"format", "output_format" and "output_location" go with "input"')
        return self


job_submission = TypeAdapter(JobSubmission)


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:20]}"


def inline_job(
    job_id: str, submission: JobSubmission, manifest: Manifest, deadline_s: float
) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "inline", "output": submission.output}
    if submission.instances is not None:
        spec["instances"] = submission.instances
    else:
        spec["records"] = submission.records
    return _row(job_id, manifest, spec, deadline_s)


def plan_file_job(
    job_id: str,
    submission: JobSubmission,
    manifest: Manifest,
    storage: Storage,
    deadline_s: float,
    assemble_to: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job row and its partitions (byte ranges); reads only around each cut. Runs in a thread.
    `assemble_to`: a file its parts are joined into when they are all done (a watch's output)."""
    assert submission.input is not None
    source = _location(storage, submission.input)
    fmt = submission.format or FORMAT_BY_SUFFIX.get(PurePosixPath(source.path).suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"cannot tell the format of {submission.input!r}: give format (jsonl, csv, parquet)"
        )
    out_format = submission.output_format or ("jsonl" if fmt == "parquet" else fmt)
    if out_format == "csv" and fmt == "jsonl":
        raise InvalidInput("CSV output takes CSV or parquet input: JSON lines give JSON lines")
    output = _location(storage, submission.output_location or _default_output(source, job_id))
    header: list[str] | None
    try:
        if _holds_files(storage, output):
            raise OutputExists(f"{output.url!r} holds files already: name a new output_location")
        size = storage.size(source)
        with storage.filesystem(source).open(source.path, "rb") as file:
            if fmt == "parquet":
                header, parts = _row_groups(file, submission.input)
            else:
                header, parts = _byte_ranges(file, size, submission, fmt)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputNotFound(f"input {submission.input!r} is not a file") from None
    except OSError as exc:  # a name too long, no permission, the store refusing
        raise InvalidLocation(f"cannot read {submission.input!r} or use {output.url!r}: {exc}") from None
    if len(parts) > MAX_PARTITIONS:
        raise InvalidInput(
            f"{len(parts)} partitions: at most {MAX_PARTITIONS}; give a larger partition_bytes"
        )
    spec = {
        "kind": "file", "output": submission.output, "input": source.url, "format": fmt, "header": header,
        "output_location": output.url, "on_bad_rows": submission.on_bad_rows,
        "max_attempts": submission.max_attempts, "size": size, "output_format": submission.output_format,
    }  # fmt: skip
    if assemble_to is not None:
        spec["assemble_to"] = _location(storage, assemble_to).url
    return _row(job_id, manifest, spec, deadline_s), parts


def _byte_ranges(
    file: BinaryIO, size: int, submission: JobSubmission, fmt: str
) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """Newline-aligned ranges, and a CSV file's header."""
    plan = plan_lines(file, size, submission.partition_bytes, has_header=fmt == "csv")
    header = None
    if plan.header is not None:
        try:
            header = next(csv.reader([plan.header.decode()]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            raise InvalidInput(f"{submission.input!r}: the first line is not a CSV header") from None
    return header, [{"start": r.start, "end": r.end} for r in plan.ranges]


def _row_groups(file: BinaryIO, name: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    """A parquet file's columns, and its row groups, one partition each (empty ones left out)."""
    try:
        metadata = pq.ParquetFile(file).metadata
    except pa.ArrowInvalid as exc:  # (an OSError reading it is the store's, worth another try)
        raise InvalidInput(f"{name!r} is not a parquet file: {exc}") from None
    groups = (metadata.row_group(i) for i in range(metadata.num_row_groups))
    columns = list(metadata.schema.to_arrow_schema().names)
    return columns, [{"row_group": i, "rows": g.num_rows} for i, g in enumerate(groups) if g.num_rows]


def _holds_files(storage: Storage, location: Location) -> bool:
    filesystem = storage.filesystem(location)
    return bool(filesystem.exists(location.path) and filesystem.ls(location.path))


def _location(storage: Storage, url: str) -> Location:
    try:
        return storage.location(url)
    except LocationError as exc:
        raise InvalidLocation(str(exc)) from None


def _default_output(source: Location, job_id: str) -> str:
    """Beside the fleet's other job outputs: jobs/<id> in the data directory, or in the input's bucket."""
    if source.protocol == "s3":
        return f"s3://{source.path.split('/', 1)[0]}/modelfleet-jobs/{job_id}"
    return f"jobs/{job_id}"


def _row(job_id: str, manifest: Manifest, spec: dict[str, Any], deadline_s: float) -> dict[str, Any]:
    now = time.time()
    return {
        "id": job_id, "status": "queued", "model": manifest.name, "version": manifest.version,
        "spec": {**spec, "sha256": manifest.sha256}, "created": now, "deadline": now + deadline_s,
    }  # fmt: skip


def inline_body(spec: dict[str, Any]) -> bytes:
    """The predict body of an inline job: what `POST .../predict` would have received."""
    rows = {"instances": spec["instances"]} if "instances" in spec else {"records": spec["records"]}
    return orjson.dumps({**rows, "output": spec["output"]})


def output_format(spec: dict[str, Any]) -> OutputFormat:
    """A file job's output format: as submitted, else as its input's (parquet input: JSON lines)."""
    fmt: OutputFormat = spec.get("output_format") or (
        "jsonl" if spec["format"] == "parquet" else spec["format"]
    )
    return fmt
