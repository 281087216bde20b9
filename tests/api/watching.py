"""What the in-process watch tests share: quick detection settings, a watch's files, waiting
until files settle, reading outputs."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pandas as pd

from tests.in_process import AUTH, InProcessFleet

FAST = {"watch_interval_s": 0.5, "watch_settle_s": 0.2}


async def watch_files(fleet: InProcessFleet, name: str) -> list[dict[str, Any]]:
    answer = await fleet.gateway.get(f"/api/v1/watches/{name}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    files: list[dict[str, Any]] = answer.json()["files"]
    return files


async def settled(
    fleet: InProcessFleet, name: str, count: int, timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The watch's files once `count` of them are done or failed."""
    files: list[dict[str, Any]] = []
    for _ in range(int(timeout_s / 0.1)):
        files = await watch_files(fleet, name)
        if sum(f["state"] in ("done", "failed") for f in files) >= count:
            return files
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} files not settled: {files}")


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def with_ids(frame: pd.DataFrame, start: int = 0) -> pd.DataFrame:
    return frame.assign(id=range(start, start + len(frame)))[["id", *frame.columns]]
