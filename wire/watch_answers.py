"""The success bodies of the gateway's watch routes (inferrer/api/watches.py), as its document
declares them."""

from __future__ import annotations

from typing import Literal

from datafiles.formats import InputFormat, OutputFormat
from wire.openapi import Answer
from wire.partition_calls import OnBadRows, PredictionKind

FileState = Literal["pending", "running", "done", "failed"]
# How a gateway finds a watch's files: inotify (with listings behind it), polling (listings only),
# listing (an object store).
Detection = Literal["inotify", "polling", "listing"]


class FileCounts(Answer):
    pending: int
    running: int
    done: int
    failed: int


class WatchView(Answer):
    name: str
    input: str
    pattern: str
    model: str | None  # the model its files are predicted with, or
    graph: str | None  # the inference graph
    version: str | None  # None: each file's job takes the active version when it is picked up
    output_location: str  # the folder or prefix its outputs go under
    prediction: PredictionKind
    format: InputFormat | None
    output_format: OutputFormat | None
    partition_bytes: int
    on_bad_rows: OnBadRows
    max_attempts: int
    paused: bool
    detection: Detection
    error: str | None  # why the input cannot be listed now
    counts: FileCounts  # its files by state
    created: str


class WatchedFile(Answer):
    """One version of a file (same name, new size or time: a new version, processed again)."""

    name: str
    size: int
    state: FileState
    version: str | None  # the model's, fixed when the file was picked up
    job: str | None  # the latest attempt's job
    attempts: int
    output_location: str | None  # its output file: reserved when picked up; written and verified once done
    rows: int | None
    error: str | None  # the last attempt's failure; a failed file's reason
    seen: str
    updated: str


class WatchDetail(WatchView):
    """The watch and the files it has seen, newest first (`failed` ones: the dead letter list)."""

    files: list[WatchedFile]


class WatchList(Answer):
    watches: list[WatchView]
