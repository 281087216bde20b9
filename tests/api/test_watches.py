"""inferrer/api/watches.py in-process, through the app factory: files dropped into a watched folder
become one job each and one verified output each; new versions of a name, temporary names, pause
and resume, bad files, refusals."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from tests.api.watching import FAST, csv_rows, settled, watch_files, with_ids
from tests.declared import assert_declared
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_each_file_becomes_one_job_and_one_verified_output(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = with_ids(pd.concat([text_column_rows] * 40, ignore_index=True))
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
        files = await settled(fleet, "drop", 3)
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
    rows = csv_rows(out / "a.csv")
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
        with_ids(text_column_rows).to_csv(incoming / "day.csv", index=False)
        await settled(fleet, "w", 1)
        with_ids(text_column_rows.head(5), start=100).to_csv(incoming / "day.csv", index=False)
        files = await settled(fleet, "w", 2)
    assert [f["state"] for f in files] == ["done", "done"]
    out = tmp_path / "data" / "out" / "model=people" / "version=1"
    first, second = csv_rows(out / "day.csv"), csv_rows(out / "day-2.csv")
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
        with_ids(text_column_rows).to_csv(incoming / "good.csv", index=False)
        files = {f["name"]: f for f in await settled(fleet, "w", 3)}
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
        with_ids(text_column_rows).to_csv(incoming / "x.csv", index=False)
        os.close(os.open(bytes(incoming) + b"/bad\xff.csv", os.O_CREAT | os.O_WRONLY))  # no text name
        supervisor = fleet.gateway_app.state.watches.supervisor
        looks = 0
        read_watches = supervisor.store.watches

        async def counted() -> Any:
            nonlocal looks
            looks += 1
            return await read_watches()

        supervisor.store.watches = counted
        await asyncio.sleep(2)
        supervisor.store.watches = read_watches
        assert looks <= 10  # a step every 0.5 s or less often; a paused watch is never "due"
        assert await watch_files(fleet, "w") == []
        resumed = await call("POST", "/api/v1/watches/w/resume", "/api/v1/watches/{name}/resume")
        assert resumed["paused"] is False
        assert [f["state"] for f in await settled(fleet, "w", 1)] == ["done"]
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
        text = with_ids(text_column_rows.head(3)).to_csv(index=False)
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
        with_ids(text_column_rows).to_csv(tmp_path / "data" / "in" / "x.csv", index=False)
        for _ in range(300):
            files = await watch_files(fleet, "w")
            if files and files[0]["attempts"] >= 2 and files[0]["error"]:
                break
            await asyncio.sleep(0.1)
        assert files[0]["state"] in ("pending", "running"), files
        assert "writing the output failed 5 times" in files[0]["error"], files
        (tmp_path / "data" / "out" / "model=people").unlink()
        (done,) = await settled(fleet, "w", 1)
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
