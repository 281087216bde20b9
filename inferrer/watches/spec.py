"""A watch as created (`POST /api/v1/watches`), and what it makes of each file it picks up: the job
submission, and the output file's name."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

from artifacts.schema import JsonInt
from inferrer.jobs.submission import (
    FORMAT_BY_SUFFIX,
    NAME,
    GivenOrLeftOut,
    InputFormat,
    JobSubmission,
    OutputFormat,
)

_Location = Annotated[str, Field(min_length=1, max_length=1024)]
# Names a file has while it is still being written (copies, downloads, editors): never taken.
_TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")
_TEMPORARY_MARKS = ("_COPYING_",)


class WatchSpec(GivenOrLeftOut):
    """Watch `input` (a folder in the data directory, or s3://bucket/prefix) for files named as
    `pattern`; each new one becomes a job of `model`, its output one file under `output`."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME)]
    input: _Location
    # A glob on the names of the files directly in `input` (not in its subfolders).
    pattern: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\x00]+$")] = "*"
    model: Annotated[str, Field(pattern=NAME)]
    # Default: the model's active version when each file is picked up (recorded with the file).
    version: SkipJsonSchema[None] | Annotated[str, Field(pattern=NAME)] = None
    output: _Location
    prediction: Literal["predict", "predict_proba"] = "predict"
    format: SkipJsonSchema[None] | InputFormat = None  # default: from the suffix
    # Default: CSV, or JSON lines for JSON lines input.
    output_format: SkipJsonSchema[None] | OutputFormat = None
    partition_bytes: JsonInt = Field(default=8 * 2**20, ge=4096, le=2**28)
    on_bad_rows: Literal["fail", "skip"] = "fail"
    # Jobs made for one file before it is failed for good (each job retries a partition 3 times).
    max_attempts: JsonInt = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _csv_from_tables(self) -> WatchSpec:
        if self.format == "jsonl" and self.output_format == "csv":
            raise ValueError("CSV output takes CSV or parquet input: JSON lines give JSON lines")
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

    def input_format(self, name: str) -> InputFormat | None:
        return self.format or FORMAT_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())

    def output_format_of(self, name: str) -> OutputFormat:
        return self.output_format or ("jsonl" if self.input_format(name) == "jsonl" else "csv")

    def output_file(self, name: str, version: str, revision: int) -> str:
        """`<output>/model=<m>/version=<v>/<stem>.<ext>`; a later version of the same input name,
        whose first output is there already, gets `<stem>-<revision>.<ext>`."""
        stem = PurePosixPath(name).stem or name
        suffix = "" if revision == 1 else f"-{revision}"
        folder = f"{self.output.rstrip('/')}/model={self.model}/version={version}"
        return f"{folder}/{stem}{suffix}.{self.output_format_of(name)}"

    def staging(self, job_id: str) -> str:
        """Where a file's job writes its parts before they are joined into its output file."""
        return f"{self.output.rstrip('/')}/_staging/{job_id}"

    def submission(self, name: str, version: str, job_id: str) -> JobSubmission:
        return JobSubmission(
            model=self.model,
            version=version,
            output=self.prediction,
            input=f"{self.input.rstrip('/')}/{name}",
            format=self.input_format(name),
            output_format=self.output_format_of(name),
            output_location=self.staging(job_id),
            partition_bytes=self.partition_bytes,
            on_bad_rows=self.on_bad_rows,
        )


watch_spec = TypeAdapter(WatchSpec)
