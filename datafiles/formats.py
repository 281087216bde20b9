"""The formats of the files jobs and watches read and write, and the one rule for an output's format,
for the gateway (planning a job, naming a watch's outputs) and the node (writing a partition) alike:

- the input's format is the one given, else its name's suffix tells;
- the output's format is the input's, and parquet input gives JSON lines; one asked for wins;
- CSV output needs CSV or parquet input (table rows): JSON lines give JSON lines.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

InputFormat = Literal["jsonl", "csv", "parquet"]
OutputFormat = Literal["jsonl", "csv"]
FORMAT_BY_SUFFIX: dict[str, InputFormat] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"
}  # fmt: skip


class FormatRefused(ValueError):
    """A file whose format cannot be told, or an output format its input cannot give."""


def input_format(name: str, given: InputFormat | None = None) -> InputFormat:
    """The format given, else the one `name`'s suffix tells."""
    found = given or FORMAT_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())
    if found is None:
        raise FormatRefused(f"cannot tell the format of {name!r}: give format (jsonl, csv, parquet)")
    return found


def output_format(source: InputFormat, asked: OutputFormat | None = None) -> OutputFormat:
    """The output's format: the one asked for, else the input's (parquet input: JSON lines)."""
    if asked == "csv" and source == "jsonl":
        raise FormatRefused("CSV output takes CSV or parquet input: JSON lines give JSON lines")
    if asked is not None:
        return asked
    return "csv" if source == "csv" else "jsonl"
