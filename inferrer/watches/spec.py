"""A watch as created (`POST /api/v1/watches`), and what it makes of each file it picks up: the job
submission, and the output file's name."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

from artifacts.names import Segment
from artifacts.schema import JsonInt
from datafiles.formats import FormatRefused, InputFormat, OutputFormat, input_format, output_format
from inferrer.errors import InvalidInput
from inferrer.jobs.bodies import RenamedFields, declare_old_names
from inferrer.jobs.submission import (
    DEFAULT_PARTITION_BYTES,
    ONE_TARGET,
    JobSubmission,
    Location,
    PartitionBytes,
    check_one_target,
)
from wire.partition_calls import OnBadRows, PredictionKind

_RENAMED = {"output": "output_location"}  # this release's new names: the old ones go in the next
# Names a file has while it is still being written (copies, downloads, editors): never taken.
_TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")
_TEMPORARY_MARKS = ("_COPYING_",)


def _declared(schema: dict[str, Any]) -> None:
    """Exactly one of `model` and `graph` (checked again by the validator); the old names taken."""
    schema["allOf"] = [ONE_TARGET]
    declare_old_names(schema, _RENAMED)


class WatchSpec(RenamedFields):
    """Watch `input` (a folder in the data directory, or s3://bucket/prefix) for files named as
    `pattern`; each new one becomes a job of `model`, its output one file under `output_location`."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_declared)
    RENAMED = _RENAMED

    name: Segment
    input: Location
    # A glob on the names of the files directly in `input` (not in its subfolders).
    pattern: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\x00]+$")] = "*"
    model: SkipJsonSchema[None] | Segment = None
    graph: SkipJsonSchema[None] | Segment = None  # an inference graph, in place of a model
    # Default: the active version (of the model or graph) when each file is picked up (recorded
    # with the file).
    version: SkipJsonSchema[None] | Segment = None
    output_location: Location
    prediction: PredictionKind = "predict"
    format: SkipJsonSchema[None] | InputFormat = None  # default: from the suffix
    # Default: as datafiles.formats.output_format says (the input's; parquet gives JSON lines).
    output_format: SkipJsonSchema[None] | OutputFormat = None
    partition_bytes: PartitionBytes = DEFAULT_PARTITION_BYTES
    on_bad_rows: OnBadRows = "fail"
    # Jobs made for one file before it is failed for good (each job retries a partition 3 times).
    max_attempts: JsonInt = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _csv_from_tables(self) -> WatchSpec:
        check_one_target(self.model, self.graph)
        if self.format is not None:
            output_format(self.format, self.output_format)  # FormatRefused is a ValueError
        return self

    def takes(self, name: str) -> bool:
        """A file this watch picks up: named as its pattern, not a hidden or temporary name, and a
        name of text (a name of undecodable bytes cannot be stored, given to a node or answered)."""
        if name.startswith((".", "~")) or name.endswith(_TEMPORARY_SUFFIXES) or not name.isprintable():
            return False
        try:
            name.encode()
        except UnicodeEncodeError:
            return False
        if any(mark in name for mark in _TEMPORARY_MARKS):
            return False
        return fnmatch.fnmatchcase(name, self.pattern)

    def output_format_of(self, name: str) -> OutputFormat:
        """A file's output format, as its job's (InvalidInput: the file cannot make a job)."""
        try:
            return output_format(input_format(self.located(name), self.format), self.output_format)
        except FormatRefused as exc:
            raise InvalidInput(str(exc)) from None

    def located(self, name: str) -> str:
        """The location of a file in the watched place."""
        return f"{self.input.rstrip('/')}/{name}"

    def output_file(self, name: str, version: str, revision: int) -> str:
        """`<output>/model=<m>/version=<v>/<stem>.<ext>` (`graph=<g>` for a graph's); a later
        version of the same input name, whose first output is there already, gets
        `<stem>-<revision>.<ext>`."""
        stem = PurePosixPath(name).stem or name
        suffix = "" if revision == 1 else f"-{revision}"
        target = f"graph={self.graph}" if self.graph is not None else f"model={self.model}"
        folder = f"{self.output_location.rstrip('/')}/{target}/version={version}"
        return f"{folder}/{stem}{suffix}.{self.output_format_of(name)}"

    def staging(self, job_id: str) -> str:
        """Where a file's job writes its parts before they are joined into its output file."""
        return f"{self.output_location.rstrip('/')}/_staging/{job_id}"

    def submission(self, name: str, version: str, job_id: str) -> JobSubmission:
        """The job of one of its files: its formats as given to the watch, if given."""
        given = self.model_dump(include={"format", "output_format", "model", "graph"}, exclude_none=True)
        return JobSubmission.model_validate(
            {
                "version": version,
                "prediction": self.prediction,
                "input": self.located(name),
                "output_location": self.staging(job_id),
                "partition_bytes": self.partition_bytes,
                "on_bad_rows": self.on_bad_rows,
                **given,
            }
        )


watch_spec = TypeAdapter(WatchSpec)
