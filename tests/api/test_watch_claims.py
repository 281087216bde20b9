"""inferrer/api/watches.py in-process, each claim of docs/jobs-and-watches.md that had no test: the
read-back, files there before the watch, subfolders, polling, a file written again, delete and
re-create, the skipped-rows file, JSON-lines output."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from datafiles.locations import Location, Storage
from inferrer.dataplane.balancer_client import UpstreamAnswer
from inferrer.jobs import outputs
from inferrer.watches import detection
from tests.api.watching import FAST, csv_rows, settled, watch_files, with_ids
from tests.in_process import AUTH, InProcessFleet, NodeUpstream, in_process_fleet

pytestmark = pytest.mark.anyio


async def _watching(fleet: InProcessFleet, pipeline: Pipeline, **fields: Any) -> Path:
    """`people` deployed and watch `w` created, from `in` to `out` (with `fields`): the folder."""
    await fleet.deploy("people", sio.dumps(pipeline))
    body = {"name": "w", "input": "in", "model": "people", "output_location": "out", **fields}
    created = await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    return fleet.directory / "data" / "in"


async def _until(
    fleet: InProcessFleet, name: str, holds: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The watch's files once `holds` says so (looked at every 0.1 s)."""
    files: list[dict[str, Any]] = []
    for _ in range(int(timeout_s / 0.1)):
        files = await watch_files(fleet, name)
        if holds(files):
            return files
        await asyncio.sleep(0.1)
    raise AssertionError(f"never so: {files}")


class _HeldPartitions:
    """Partition calls wait at the balancer's door until released: a job that has begun (its
    first call arrived) and cannot end before the test says so."""

    def __init__(self, upstream: NodeUpstream) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self._request = upstream.request

    async def request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        if path == "/internal/v1/partitions" and not self.release.is_set():
            self.arrived.set()
            await self.release.wait()
        return await self._request(method, path, body, timeout_s)


async def test_an_output_that_does_not_read_back_whole_is_never_done_and_is_retried(
    tmp_path: Path,
    text_column_pipeline: Pipeline,
    text_column_rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The output is written, but reading it back finds fewer rows than its parts reported: the
    file stays pending (never done) with the reason, and its next attempt, whose read-back
    agrees, makes it done. The read-back is a mock, because a read-back that disagrees with what
    was written cannot be provoked otherwise."""
    disagree = True
    count_rows = outputs.count_rows

    def read_back(storage: Storage, location: Location, fmt: str) -> int:
        counted = count_rows(storage, location, fmt)
        return counted - 1 if disagree and counted else counted

    monkeypatch.setattr(outputs, "count_rows", read_back)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "x.csv", index=False)
        (refused,) = await _until(fleet, "w", lambda files: bool(files and files[0]["error"]))
        first_job = (await fleet.gateway.get(f"/api/v1/jobs/{refused['job']}", headers=AUTH)).json()
        disagree = False
        (done,) = await settled(fleet, "w", 1)
    assert refused["state"] == "pending" and refused["attempts"] == 1, refused
    assert "does not hold the 12 rows written" in refused["error"], refused
    assert first_job["status"] == "failed"
    assert done["state"] == "done" and done["attempts"] == 2 and done["rows"] == len(text_column_rows)
    assert done["job"] != refused["job"]
    out = tmp_path / "data" / "out" / "model=people" / "version=1" / "x.csv"
    assert [int(r["id"]) for r in csv_rows(out)] == list(range(len(text_column_rows)))


async def test_files_already_in_the_folder_when_the_watch_is_created_are_picked_up(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    incoming = tmp_path / "data" / "in"
    incoming.mkdir(parents=True)
    for name in ("old-1.csv", "old-2.csv"):
        with_ids(text_column_rows).to_csv(incoming / name, index=False)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        files = await settled(fleet, "w", 2)
    assert sorted((f["name"], f["state"]) for f in files) == [("old-1.csv", "done"), ("old-2.csv", "done")]
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == ["old-1.csv", "old-2.csv"]


async def test_files_in_subfolders_of_the_watched_folder_never_become_jobs(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        incoming = await _watching(fleet, text_column_pipeline)
        for folder in (incoming / "sub", incoming / "sub" / "deeper", incoming / "folder.csv"):
            folder.mkdir()  # a folder whose name matches the pattern is no file either
        with_ids(text_column_rows).to_csv(incoming / "sub" / "nested.csv", index=False)
        with_ids(text_column_rows).to_csv(incoming / "sub" / "deeper" / "nested-2.csv", index=False)
        with_ids(text_column_rows).to_csv(incoming / "top.csv", index=False)  # listed with them, last
        files = await settled(fleet, "w", 1)
        jobs = (await fleet.gateway.get("/api/v1/jobs", headers=AUTH)).json()["jobs"]
    assert [(f["name"], f["state"]) for f in files] == [("top.csv", "done")]
    assert [j["id"] for j in jobs] == [files[0]["job"]]
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == ["top.csv"]


async def test_files_are_picked_up_by_polling_where_inotify_is_not_available(
    tmp_path: Path,
    text_column_pipeline: Pipeline,
    text_column_rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """inotify fails (as where the kernel offers none): the watch says `polling`, and a file
    dropped in after the watch's first listing is found by the listings at the interval alone."""

    def no_inotify(*folders: Any, **options: Any) -> Any:
        raise OSError("inotify is not available here")

    monkeypatch.setattr(detection.watchfiles, "watch", no_inotify)
    incoming = tmp_path / "data" / "in"
    incoming.mkdir(parents=True)
    with_ids(text_column_rows).to_csv(incoming / "first.csv", index=False)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        await settled(fleet, "w", 1)  # the first listings are over: only the interval's come now
        with_ids(text_column_rows.head(4)).to_csv(incoming / "second.csv", index=False)
        files = await settled(fleet, "w", 2)
        view = (await fleet.gateway.get("/api/v1/watches/w", headers=AUTH)).json()
    assert view["detection"] == "polling"
    assert {f["name"]: (f["state"], f["rows"]) for f in files} == {
        "first.csv": ("done", len(text_column_rows)),
        "second.csv": ("done", 4),
    }


async def test_a_file_written_again_before_its_job_began_is_processed_once_as_its_new_version(
    tmp_path: Path,
    text_column_pipeline: Pipeline,
    text_column_rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file may run at a time, and the first one's job is held: the second waits pending, is
    written again meanwhile, and then its old version fails (gone) and its new one is done."""
    async with in_process_fleet(tmp_path, nodes=1, watch_max_running=1, **FAST) as fleet:
        held = _HeldPartitions(fleet.upstream)
        monkeypatch.setattr(fleet.upstream, "request", held.request)
        incoming = await _watching(fleet, text_column_pipeline)
        with_ids(text_column_rows).to_csv(incoming / "first.csv", index=False)
        await asyncio.wait_for(held.arrived.wait(), 60)  # first.csv's job is under way, and holds
        with_ids(text_column_rows.head(5)).to_csv(incoming / "late.csv", index=False)
        await _until(fleet, "w", lambda files: any(f["name"] == "late.csv" for f in files))
        with_ids(text_column_rows.head(3), start=100).to_csv(incoming / "late.csv", index=False)
        versions = await _until(fleet, "w", lambda files: sum(f["name"] == "late.csv" for f in files) == 2)
        held.release.set()
        files = await settled(fleet, "w", 3)
        jobs = (await fleet.gateway.get("/api/v1/jobs", headers=AUTH)).json()["jobs"]
    assert all(f["state"] == "pending" for f in versions if f["name"] == "late.csv"), versions
    old, new = sorted((f for f in files if f["name"] == "late.csv"), key=lambda f: f["seen"])
    assert old["state"] == "failed" and "written again before its job began" in old["error"], old
    assert old["size"] > new["size"]
    assert new["state"] == "done" and new["rows"] == 3 and new["attempts"] == 1, new
    assert len(jobs) == 2  # first.csv's and the new version's: none for the old one
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["first.csv", PurePosixPath(new["output_location"]).name]
    )
    assert [r["id"] for r in csv_rows(tmp_path / "data" / new["output_location"])] == ["100", "101", "102"]


async def test_a_watch_deleted_and_created_again_takes_every_file_again_into_new_outputs(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "day.csv", index=False)
        (before,) = await settled(fleet, "w", 1)
        out = tmp_path / "data" / "out" / "model=people" / "version=1"
        first_output = (out / "day.csv").read_bytes()
        assert (await fleet.gateway.delete("/api/v1/watches/w", headers=AUTH)).status_code == 200
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out"}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        (again,) = await settled(fleet, "w", 1)
    assert before["state"] == "done" and before["output_location"] == "out/model=people/version=1/day.csv"
    assert again["state"] == "done" and again["attempts"] == 1 and again["job"] != before["job"]
    assert again["output_location"] == "out/model=people/version=1/day-2.csv"
    assert sorted(p.name for p in out.iterdir()) == ["day-2.csv", "day.csv"]
    assert (out / "day.csv").read_bytes() == first_output  # never overwritten
    assert (out / "day-2.csv").read_bytes() == first_output


async def test_skipped_rows_are_listed_in_an_errors_file_beside_the_output(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = with_ids(text_column_rows.head(4))
    lines = frame.to_csv(index=False).splitlines()
    lines[2:2] = ["900,oops"]  # too few fields
    lines[4:4] = ["901,old,1000.0,oslo"]  # no number for age: the model refuses it
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline, on_bad_rows="skip")
        (tmp_path / "data" / "in" / "mixed.csv").write_text("\n".join(lines) + "\n")
        (done,) = await settled(fleet, "w", 1)
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert done["state"] == "done" and done["rows"] == 4, done
    assert sorted(p.name for p in out.iterdir()) == ["_errors", "mixed.csv"]
    assert [r["id"] for r in csv_rows(out / "mixed.csv")] == ["0", "1", "2", "3"]
    errors = [orjson.loads(line) for line in (out / "_errors" / "mixed.csv.jsonl").read_bytes().splitlines()]
    # Lines numbered from 1 within the partition (one here), the header read once and not counted.
    assert [(e["line"], e["row"]) for e in errors] == [(2, "900,oops"), (4, "901,old,1000.0,oslo")], errors
    assert "2 fields where the header has 4" in errors[0]["reason"]
    assert "could not convert string to float: 'old'" in errors[1]["reason"]


async def test_a_csv_file_gives_json_lines_with_output_format_jsonl(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = with_ids(text_column_rows)
    expected = text_column_pipeline.predict(text_column_rows).tolist()
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline, output_format="jsonl")
        frame.to_csv(tmp_path / "data" / "in" / "people.csv", index=False)
        (done,) = await settled(fleet, "w", 1)
    assert done["state"] == "done" and done["output_location"] == "out/model=people/version=1/people.jsonl"
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == ["people.jsonl"]
    rows = [orjson.loads(line) for line in (out / "people.jsonl").read_bytes().splitlines()]
    assert [r["prediction"] for r in rows] == expected
    assert [{k: r[k] for k in ("id", "age", "income", "city")} for r in rows] == frame.to_dict("records")
