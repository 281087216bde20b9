"""A submitted job planned before it is stored. Inline rows (`instances` or `records`) make an async
prediction: one partition, predicted by the gateway's own predict path. A file (`input`) is split
into newline-aligned byte ranges, or a parquet file's row groups, that nodes read themselves. Either
way the model's version is fixed at submission (the active one by default) and pinned against
retention until the job has finished."""

from __future__ import annotations

import csv
import time
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import Manifest
from datafiles.formats import FormatRefused, input_format, output_format
from datafiles.locations import Location, LocationError, Storage
from datafiles.partitions import plan_lines
from inferrer.errors import InputNotFound, InvalidInput, InvalidLocation, OutputExists
from inferrer.jobs.records import FilePlan, InlinePlan, NewJob, Span
from inferrer.jobs.submission import JobSubmission
from wire import tracing

MAX_PARTITIONS = 20_000  # a job's partitions live in the store; beyond this, larger ones


def inline_job(job_id: str, submission: JobSubmission, manifest: Manifest, deadline_s: float) -> NewJob:
    plan = InlinePlan(
        prediction=submission.prediction, instances=submission.instances, records=submission.records,
        sha256=manifest.served_sha256, max_attempts=submission.max_attempts,
    )  # fmt: skip
    return _new(job_id, manifest, plan, [Span()], deadline_s, starts_trace=False)


def plan_file_job(
    job_id: str,
    submission: JobSubmission,
    manifest: Manifest,
    storage: Storage,
    deadline_s: float,
    assemble_to: str | None = None,
) -> NewJob:
    """The job and its partitions; reads only around each cut. Runs in a thread. `assemble_to`: a
    file its parts are joined into when they are all done (a watch's output)."""
    assert submission.input is not None
    source = _location(storage, submission.input)
    try:
        fmt = input_format(submission.input, submission.format)
        output_format(fmt, submission.output_format)
    except FormatRefused as exc:
        raise InvalidInput(str(exc)) from None
    output = _location(storage, submission.output_location or _default_output(source, job_id))
    header: list[str] | None
    try:
        if _holds_files(storage, output):
            raise OutputExists(f"{output.url!r} holds files already: name a new output_location")
        size = storage.size(source)
        with storage.filesystem(source).open(source.path, "rb") as file:
            if fmt == "parquet":
                header, spans = _row_groups(file, submission.input)
            else:
                header, spans = _byte_ranges(file, size, submission, fmt == "csv")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputNotFound(f"input {submission.input!r} is not a file") from None
    except OSError as exc:  # a name too long, no permission, the store refusing
        raise InvalidLocation(f"cannot read {submission.input!r} or use {output.url!r}: {exc}") from None
    if len(spans) > MAX_PARTITIONS:
        raise InvalidInput(
            f"{len(spans)} partitions: at most {MAX_PARTITIONS}; give a larger partition_bytes"
        )
    plan = FilePlan(
        prediction=submission.prediction, input=source.url, format=fmt, header=header,
        output_location=output.url, output_format=submission.output_format,
        on_bad_rows=submission.on_bad_rows, max_attempts=submission.max_attempts, size=size,
        assemble_to=None if assemble_to is None else _location(storage, assemble_to).url,
        sha256=manifest.served_sha256,
    )  # fmt: skip
    # A watch's job (it assembles one output) has no request: it may start a trace of its own.
    return _new(job_id, manifest, plan, spans, deadline_s, starts_trace=assemble_to is not None)


def _byte_ranges(
    file: BinaryIO, size: int, submission: JobSubmission, has_header: bool
) -> tuple[list[str] | None, list[Span]]:
    """Newline-aligned ranges, and a CSV file's header."""
    plan = plan_lines(file, size, submission.partition_bytes, has_header=has_header)
    header = None
    if plan.header is not None:
        try:
            header = next(csv.reader([plan.header.decode()]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            raise InvalidInput(f"{submission.input!r}: the first line is not a CSV header") from None
    return header, [Span(start=r.start, end=r.end) for r in plan.ranges]


def _row_groups(file: BinaryIO, name: str | None) -> tuple[list[str], list[Span]]:
    """A parquet file's columns, and its row groups, one partition each (empty ones left out)."""
    try:
        metadata = pq.ParquetFile(file).metadata
    except pa.ArrowInvalid as exc:  # (an OSError reading it is the store's, worth another try)
        raise InvalidInput(f"{name!r} is not a parquet file: {exc}") from None
    groups = (metadata.row_group(i) for i in range(metadata.num_row_groups))
    columns = list(metadata.schema.to_arrow_schema().names)
    return columns, [Span(row_group=i, rows=g.num_rows) for i, g in enumerate(groups) if g.num_rows]


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


def _new(
    job_id: str,
    manifest: Manifest,
    plan: InlinePlan | FilePlan,
    spans: list[Span],
    deadline_s: float,
    starts_trace: bool,
) -> NewJob:
    now = time.time()
    attributes = {"modelfleet.job": job_id, "modelfleet.partitions": len(spans)}
    with tracing.span("job", attributes, root=starts_trace):
        plan = plan.model_copy(update={"traceparent": tracing.traceparent()})  # its partitions' parent
    return NewJob(job_id, manifest.name, manifest.version, plan, spans, now, now + deadline_s)
