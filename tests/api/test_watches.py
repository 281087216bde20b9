"""inferrer/api/watches.py in-process, through the app factory: files dropped into a watched folder
become one job each and one verified output each; new versions of a name, temporary names, pause
and resume, bad files, refusals."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from datafiles.locations import Location, Storage
from inferrer.dataplane.balancer_client import UpstreamAnswer
from inferrer.jobs import outputs
from inferrer.watches import detection
from tests.declared import assert_declared
from tests.in_process import AUTH, InProcessFleet, NodeUpstream, in_process_fleet

pytestmark = pytest.mark.anyio

FAST = {"watch_interval_s": 0.5, "watch_settle_s": 0.2}


async def _files(fleet: InProcessFleet, name: str) -> list[dict[str, Any]]:
    answer = await fleet.gateway.get(f"/api/v1/watches/{name}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    files: list[dict[str, Any]] = answer.json()["files"]
    return files


async def _settled(
    fleet: InProcessFleet, name: str, count: int, timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The watch's files once `count` of them are done or failed."""
    files: list[dict[str, Any]] = []
    for _ in range(int(timeout_s / 0.1)):
        files = await _files(fleet, name)
        if sum(f["state"] in ("done", "failed") for f in files) >= count:
            return files
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} files not settled: {files}")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _with_ids(frame: pd.DataFrame, start: int = 0) -> pd.DataFrame:
    return frame.assign(id=range(start, start + len(frame)))[["id", *frame.columns]]


async def test_each_file_becomes_one_job_and_one_verified_output(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = _with_ids(pd.concat([text_column_rows] * 40, ignore_index=True))
    expected = text_column_pipeline.predict(frame).tolist()
    async with in_process_fleet(tmp_path, nodes=2, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "drop", "input": "incoming", "pattern": "*.*", "model": "people",
                "output_location": "scored", "partition_bytes": 4096}  # fmt: skip
        created = await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/v1/watches/drop"
        assert created.json()["detection"] == "inotify" or created.json()["detection"] == "polling"
        incoming = tmp_path / "data" / "incoming"
        assert incoming.is_dir()  # made with the watch
        frame.to_csv(incoming / "a.csv", index=False)
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), incoming / "b.parquet", row_group_size=100
        )
        (incoming / "c.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in frame.to_dict("records"))
        )
        (incoming / ".hidden.csv").write_text("not,taken\n")
        (incoming / "d.csv.tmp").write_text("not,taken\n")
        files = await _settled(fleet, "drop", 3)
        view = (await fleet.gateway.get("/api/v1/watches/drop", headers=AUTH)).json()
        jobs = (await fleet.gateway.get("/api/v1/jobs", headers=AUTH)).json()["jobs"]
        a_job = next(f["job"] for f in files if f["name"] == "a.csv")
        a_result = await fleet.gateway.get(f"/api/v1/jobs/{a_job}/result", headers=AUTH)
        a_view = (await fleet.gateway.get(f"/api/v1/jobs/{a_job}", headers=AUTH)).json()
        await asyncio.sleep(0.6)  # the supervisor's next step sets the gauge
        metrics = (await fleet.gateway.get("/metrics")).text
    assert {f["name"]: f["state"] for f in files} == {"a.csv": "done", "b.parquet": "done", "c.jsonl": "done"}
    assert view["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert view["detection"] == "inotify"
    assert 'modelfleet_inferrer_watch_files{state="done",watch="drop"} 3.0' in metrics
    assert "modelfleet_inferrer_watch_files_detected_total 3.0" in metrics
    assert sorted(j["id"] for j in jobs) == sorted(f["job"] for f in files)  # one job per file
    out = tmp_path / "data" / "scored" / "model=people" / "version=1"
    # The input's format; parquet gives JSON lines.
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.jsonl", "c.jsonl"]
    rows = _csv_rows(out / "a.csv")
    assert [int(r["id"]) for r in rows] == list(range(len(frame)))
    assert [int(r["prediction"]) for r in rows] == expected
    lines = [orjson.loads(line) for line in (out / "b.jsonl").read_bytes().splitlines()]
    assert [r["prediction"] for r in lines] == expected and [r["id"] for r in lines] == list(
        range(len(frame))
    )
    assert a_result.content == (out / "a.csv").read_bytes()  # a watch's job answers its one output
    assert a_view["output"] == {"location": "scored/model=people/version=1/a.csv", "manifest": None}
    lines = [orjson.loads(line) for line in (out / "c.jsonl").read_bytes().splitlines()]
    assert [r["prediction"] for r in lines] == expected and [r["id"] for r in lines] == list(
        range(len(frame))
    )
    assert all(f["rows"] == len(frame) and f["attempts"] == 1 and f["error"] is None for f in files)
    assert {f["output_location"] for f in files} == {
        f"scored/model=people/version=1/{n}" for n in ("a.csv", "b.jsonl", "c.jsonl")
    }
    assert not (tmp_path / "data" / "scored" / "_staging").exists() or not any(
        (tmp_path / "data" / "scored" / "_staging").iterdir()
    )


async def test_a_new_version_of_a_name_is_processed_again_into_a_new_output(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "w", "input": "in", "pattern": "*.csv", "model": "people", "output_location": "out"}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        incoming = tmp_path / "data" / "in"
        _with_ids(text_column_rows).to_csv(incoming / "day.csv", index=False)
        await _settled(fleet, "w", 1)
        _with_ids(text_column_rows.head(5), start=100).to_csv(incoming / "day.csv", index=False)
        files = await _settled(fleet, "w", 2)
    assert [f["state"] for f in files] == ["done", "done"]
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    first, second = _csv_rows(out / "day.csv"), _csv_rows(out / "day-2.csv")
    assert [r["id"] for r in first] == [str(i) for i in range(len(text_column_rows))]
    assert [r["id"] for r in second] == [str(i) for i in range(100, 105)]


async def test_a_bad_file_fails_with_its_reason_and_the_others_go_on(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out", "max_attempts": 2}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        incoming = tmp_path / "data" / "in"
        (incoming / "broken.parquet").write_bytes(b"PAR1 this is no parquet file")
        (incoming / "rows.csv").write_text("id,age,income,city\n1,30,1000.0,oslo\n2,oops\n")
        _with_ids(text_column_rows).to_csv(incoming / "good.csv", index=False)
        files = {f["name"]: f for f in await _settled(fleet, "w", 3)}
        dead = (await fleet.gateway.get("/api/v1/watches/w?state=failed", headers=AUTH)).json()["files"]
    assert files["good.csv"]["state"] == "done"
    assert (
        files["broken.parquet"]["state"] == "failed"
        and "not a parquet file" in files["broken.parquet"]["error"]
    )
    assert files["rows.csv"]["state"] == "failed" and "line 2" in files["rows.csv"]["error"]
    assert files["rows.csv"]["attempts"] == 2  # a job per attempt
    assert sorted(f["name"] for f in dead) == ["broken.parquet", "rows.csv"]
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == ["good.csv"]


async def test_a_paused_watch_picks_up_nothing_until_resumed(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    """Every answer as the document declares it, on the way."""
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        document = (await fleet.gateway.get("/openapi.json")).json()

        async def call(method: str, path: str, route: str, **kwargs: Any) -> Any:
            answer = await fleet.gateway.request(method, path, headers=AUTH, **kwargs)
            assert answer.status_code in (200, 201), answer.text
            return assert_declared(document, method, route, answer)

        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out"}
        created = await call("POST", "/api/v1/watches", "/api/v1/watches", json=body)
        assert created["counts"] == {"pending": 0, "running": 0, "done": 0, "failed": 0}
        paused = await call("POST", "/api/v1/watches/w/pause", "/api/v1/watches/{name}/pause")
        assert paused["paused"] is True
        incoming = tmp_path / "data" / "in"
        _with_ids(text_column_rows).to_csv(incoming / "x.csv", index=False)
        os.close(os.open(bytes(incoming) + b"/bad\xff.csv", os.O_CREAT | os.O_WRONLY))  # no text name
        await asyncio.sleep(2)
        assert await _files(fleet, "w") == []
        resumed = await call("POST", "/api/v1/watches/w/resume", "/api/v1/watches/{name}/resume")
        assert resumed["paused"] is False
        assert [f["state"] for f in await _settled(fleet, "w", 1)] == ["done"]
        await asyncio.sleep(1)
        detail = await call("GET", "/api/v1/watches/w", "/api/v1/watches/{name}")
        assert [f["name"] for f in detail["files"]] == ["x.csv"]  # never the undecodable name
        assert [w["name"] for w in (await call("GET", "/api/v1/watches", "/api/v1/watches"))["watches"]] == [
            "w"
        ]
        deleted = await call("DELETE", "/api/v1/watches/w", "/api/v1/watches/{name}")
        assert deleted["name"] == "w"
        assert (await fleet.gateway.get("/api/v1/watches/w", headers=AUTH)).status_code == 404
        assert (await fleet.gateway.get("/api/v1/watches", headers=AUTH)).json() == {"watches": []}
    assert (tmp_path / "data" / "out" / "model=people" / "version=1" / "x.csv").exists()  # outputs stay


async def test_refusals_change_nothing(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await fleet.deploy("m", pipeline_skops)
        (tmp_path / "data" / "a-file").write_text("")
        good = {"name": "w", "input": "in", "model": "m", "output_location": "out"}
        cases = [
            ({**good, "input": "../in"}, 400),
            ({**good, "output_location": "/abs"}, 400),
            ({**good, "input": ".modelfleet"}, 400),
            ({**good, "input": "s3://x/in"}, 400),  # not a bucket name
            ({**good, "model": "nope"}, 404),
            ({**good, "version": "9"}, 404),
            ({**good, "pattern": "a/*.csv"}, 422),
            ({**good, "version": None}, 422),
            ({**good, "extra": 1}, 422),
            ({**good, "prediction": "labels"}, 422),
            ({**good, "max_attempts": 0}, 422),
            ({**good, "format": "jsonl", "output_format": "csv"}, 422),
            ({**good, "input": "out/in"}, 400),  # its outputs would come back as inputs
            ({**good, "input": "a-file"}, 400),  # not a folder: none can be made there
            ({**good, "name": ".."}, 422),  # a name is one path segment, never "." or ".."
            ({**good, "name": "."}, 422),
            ({**good, "model": ".."}, 422),
            ({**good, "output": "out2"}, 422),  # the old name and the new together
        ]
        for body, status in cases:
            answer = await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)
            assert answer.status_code == status, (body, answer.text)
            assert "error" in answer.json()
        assert (await fleet.gateway.post("/api/v1/watches", json=good)).status_code == 401
        assert (await fleet.gateway.get("/api/v1/watches", headers=AUTH)).json() == {"watches": []}
        assert (await fleet.gateway.post("/api/v1/watches", json=good, headers=AUTH)).status_code == 201
        again = await fleet.gateway.post("/api/v1/watches", json=good, headers=AUTH)
        assert again.status_code == 409
        for path in ("/api/v1/watches/none", "/api/v1/watches/none/pause", "/api/v1/watches/none/resume"):
            method = "GET" if path.endswith("none") else "POST"
            assert (await fleet.gateway.request(method, path, headers=AUTH)).status_code == 404
        assert (await fleet.gateway.delete("/api/v1/watches/none", headers=AUTH)).status_code == 404


async def test_five_hundred_files_at_once_queue_within_the_running_limit(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=2, watch_max_running=4, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out"}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        text = _with_ids(text_column_rows.head(3)).to_csv(index=False)
        for i in range(500):
            (tmp_path / "data" / "in" / f"f{i:03d}.csv").write_text(text)
        most_running, counts = 0, {}
        for _ in range(1200):
            counts = (await fleet.gateway.get("/api/v1/watches/w", headers=AUTH)).json()["counts"]
            most_running = max(most_running, counts["running"])
            if counts["done"] + counts["failed"] == 500:
                break
            await asyncio.sleep(0.1)
    assert counts == {"pending": 0, "running": 0, "done": 500, "failed": 0}, counts
    assert 1 <= most_running <= 4
    assert len(list((tmp_path / "data" / "out" / "model=people" / "version=1").iterdir())) == 500


async def test_an_output_that_cannot_be_joined_fails_its_job_and_the_file_is_retried(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    """The parts are written, but the output's folder cannot be made (a file in its place): the
    job fails after its tries, naming why, and the file goes back to pending, never done."""
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out", "max_attempts": 5}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        (tmp_path / "data" / "out").mkdir()
        (tmp_path / "data" / "out" / "model=people").write_text("in the way")
        _with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "x.csv", index=False)
        for _ in range(300):
            files = await _files(fleet, "w")
            if files and files[0]["attempts"] >= 2 and files[0]["error"]:
                break
            await asyncio.sleep(0.1)
        assert files[0]["state"] in ("pending", "running"), files
        assert "writing the output failed 5 times" in files[0]["error"], files
        (tmp_path / "data" / "out" / "model=people").unlink()
        (done,) = await _settled(fleet, "w", 1)
    assert done["state"] == "done" and done["rows"] == len(text_column_rows)
    assert not list((tmp_path / "data" / "out" / "_staging").iterdir())  # every attempt's parts gone


async def test_the_old_name_of_output_location_is_taken_with_a_deprecation_note(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        document = (await fleet.gateway.get("/openapi.json")).json()
        await fleet.deploy("m", pipeline_skops)
        body = {"name": "old", "input": "in", "model": "m", "output": "out"}
        created = await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)
        assert created.status_code == 201, created.text
        current = {"name": "new", "input": "in2", "model": "m", "output_location": "out2"}
        plain = await fleet.gateway.post("/api/v1/watches", json=current, headers=AUTH)
    assert created.headers["deprecation"] == "true"
    assert created.headers["warning"] == "299 - \"field 'output' is deprecated; use 'output_location'\""
    view = assert_declared(document, "POST", "/api/v1/watches", created)
    assert view["output_location"] == "out" and "output" not in view
    assert plain.status_code == 201 and "deprecation" not in plain.headers and "warning" not in plain.headers


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
        files = await _files(fleet, name)
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
        _with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "x.csv", index=False)
        (refused,) = await _until(fleet, "w", lambda files: bool(files and files[0]["error"]))
        first_job = (await fleet.gateway.get(f"/api/v1/jobs/{refused['job']}", headers=AUTH)).json()
        disagree = False
        (done,) = await _settled(fleet, "w", 1)
    assert refused["state"] == "pending" and refused["attempts"] == 1, refused
    assert "does not hold the 12 rows written" in refused["error"], refused
    assert first_job["status"] == "failed"
    assert done["state"] == "done" and done["attempts"] == 2 and done["rows"] == len(text_column_rows)
    assert done["job"] != refused["job"]
    out = tmp_path / "data" / "out" / "model=people" / "version=1" / "x.csv"
    assert [int(r["id"]) for r in _csv_rows(out)] == list(range(len(text_column_rows)))


async def test_files_already_in_the_folder_when_the_watch_is_created_are_picked_up(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    incoming = tmp_path / "data" / "in"
    incoming.mkdir(parents=True)
    for name in ("old-1.csv", "old-2.csv"):
        _with_ids(text_column_rows).to_csv(incoming / name, index=False)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        files = await _settled(fleet, "w", 2)
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
        _with_ids(text_column_rows).to_csv(incoming / "sub" / "nested.csv", index=False)
        _with_ids(text_column_rows).to_csv(incoming / "sub" / "deeper" / "nested-2.csv", index=False)
        _with_ids(text_column_rows).to_csv(incoming / "top.csv", index=False)  # listed with them, last
        files = await _settled(fleet, "w", 1)
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
    _with_ids(text_column_rows).to_csv(incoming / "first.csv", index=False)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        await _settled(fleet, "w", 1)  # the first listings are over: only the interval's come now
        _with_ids(text_column_rows.head(4)).to_csv(incoming / "second.csv", index=False)
        files = await _settled(fleet, "w", 2)
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
        _with_ids(text_column_rows).to_csv(incoming / "first.csv", index=False)
        await asyncio.wait_for(held.arrived.wait(), 60)  # first.csv's job is under way, and holds
        _with_ids(text_column_rows.head(5)).to_csv(incoming / "late.csv", index=False)
        await _until(fleet, "w", lambda files: any(f["name"] == "late.csv" for f in files))
        _with_ids(text_column_rows.head(3), start=100).to_csv(incoming / "late.csv", index=False)
        versions = await _until(fleet, "w", lambda files: sum(f["name"] == "late.csv" for f in files) == 2)
        held.release.set()
        files = await _settled(fleet, "w", 3)
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
    assert [r["id"] for r in _csv_rows(tmp_path / "data" / new["output_location"])] == ["100", "101", "102"]


async def test_a_watch_deleted_and_created_again_takes_every_file_again_into_new_outputs(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline)
        _with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "day.csv", index=False)
        (before,) = await _settled(fleet, "w", 1)
        out = tmp_path / "data" / "out" / "model=people" / "version=1"
        first_output = (out / "day.csv").read_bytes()
        assert (await fleet.gateway.delete("/api/v1/watches/w", headers=AUTH)).status_code == 200
        body = {"name": "w", "input": "in", "model": "people", "output_location": "out"}
        assert (await fleet.gateway.post("/api/v1/watches", json=body, headers=AUTH)).status_code == 201
        (again,) = await _settled(fleet, "w", 1)
    assert before["state"] == "done" and before["output_location"] == "out/model=people/version=1/day.csv"
    assert again["state"] == "done" and again["attempts"] == 1 and again["job"] != before["job"]
    assert again["output_location"] == "out/model=people/version=1/day-2.csv"
    assert sorted(p.name for p in out.iterdir()) == ["day-2.csv", "day.csv"]
    assert (out / "day.csv").read_bytes() == first_output  # never overwritten
    assert (out / "day-2.csv").read_bytes() == first_output


async def test_skipped_rows_are_listed_in_an_errors_file_beside_the_output(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = _with_ids(text_column_rows.head(4))
    lines = frame.to_csv(index=False).splitlines()
    lines[2:2] = ["900,oops"]  # too few fields
    lines[4:4] = ["901,old,1000.0,oslo"]  # no number for age: the model refuses it
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline, on_bad_rows="skip")
        (tmp_path / "data" / "in" / "mixed.csv").write_text("\n".join(lines) + "\n")
        (done,) = await _settled(fleet, "w", 1)
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert done["state"] == "done" and done["rows"] == 4, done
    assert sorted(p.name for p in out.iterdir()) == ["_errors", "mixed.csv"]
    assert [r["id"] for r in _csv_rows(out / "mixed.csv")] == ["0", "1", "2", "3"]
    errors = [orjson.loads(line) for line in (out / "_errors" / "mixed.csv.jsonl").read_bytes().splitlines()]
    # Lines numbered from 1 within the partition (one here), the header read once and not counted.
    assert [(e["line"], e["row"]) for e in errors] == [(2, "900,oops"), (4, "901,old,1000.0,oslo")], errors
    assert "2 fields where the header has 4" in errors[0]["reason"]
    assert "could not convert string to float: 'old'" in errors[1]["reason"]


async def test_a_csv_file_gives_json_lines_with_output_format_jsonl(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = _with_ids(text_column_rows)
    expected = text_column_pipeline.predict(text_column_rows).tolist()
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await _watching(fleet, text_column_pipeline, output_format="jsonl")
        frame.to_csv(tmp_path / "data" / "in" / "people.csv", index=False)
        (done,) = await _settled(fleet, "w", 1)
    assert done["state"] == "done" and done["output_location"] == "out/model=people/version=1/people.jsonl"
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    assert sorted(p.name for p in out.iterdir()) == ["people.jsonl"]
    rows = [orjson.loads(line) for line in (out / "people.jsonl").read_bytes().splitlines()]
    assert [r["prediction"] for r in rows] == expected
    assert [{k: r[k] for k in ("id", "age", "income", "city")} for r in rows] == frame.to_dict("records")
