"""The success bodies of the gateway's watch routes (inferrer/api/watches.py), as its document
declares them."""

from __future__ import annotations

from typing import Literal

from wire.openapi import Answer

FileState = Literal["pending", "running", "done", "failed"]


class FileCounts(Answer):
    pending: int
    running: int
    done: int
    failed: int


class WatchView(Answer):
    name: str
    input: str
    pattern: str
    model: str
    version: str | None  # None: each file's job takes the active version when it is picked up
    output: str
    prediction: Literal["predict", "predict_proba"]
    format: Literal["jsonl", "csv", "parquet"] | None
    output_format: Literal["csv", "jsonl"] | None
    partition_bytes: int
    on_bad_rows: Literal["fail", "skip"]
    max_attempts: int
    paused: bool
    # inotify (with listings behind it), polling (listings only), listing (an object store).
    detection: Literal["inotify", "polling", "listing"]
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
    output: str | None  # reserved when picked up; written and verified once done
    rows: int | None
    error: str | None  # the last attempt's failure; a failed file's reason
    seen: str
    updated: str


class WatchDetail(WatchView):
    """The watch and the files it has seen, newest first (`failed` ones: the dead letter list)."""

    files: list[WatchedFile]


class WatchList(Answer):
    watches: list[WatchView]
