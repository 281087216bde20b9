"""inferrer/api/jobs.py in-process, through the app factory: inline (async) jobs, file jobs fanned out
to the nodes and gathered, bad rows, cancel, uploads, parquet, retention (refusals: test_job_refusals.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from inferrer.dataplane.balancer_client import UpstreamAnswer
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


def _people_jsonl(frame: pd.DataFrame) -> bytes:
    rows = frame.to_dict("records")
    return b"".join(orjson.dumps({"id": i, **row, "label": i % 3}) + b"\n" for i, row in enumerate(rows))


async def test_an_inline_job_answers_as_predict_would(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("m", pipeline_skops)
        rows = [[0.1, -1.0, 2.0, 0.5, 1.5, -0.3], [1.0, 0.2, -0.7, 0.0, 0.4, 2.2]]
        submitted = await fleet.gateway.post(
            "/api/v1/jobs", json={"model": "m", "instances": rows}, headers=AUTH
        )
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        assert submitted.headers["location"] == f"/api/v1/jobs/{job['id']}"
        assert (await fleet.finished_job(job["id"]))["status"] == "succeeded"
        result = (await fleet.gateway.get(f"/api/v1/jobs/{job['id']}/result", headers=AUTH)).json()
        online = (await fleet.gateway.post("/api/v1/models/m/predict", json={"instances": rows})).json()
        assert result["predictions"] == online["predictions"] and result["version"] == "1"


async def test_a_file_job_fans_out_and_gathers_every_row_once_in_order(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = pd.concat([text_column_rows] * 50, ignore_index=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.jsonl").write_bytes(_people_jsonl(frame))
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"model": "people", "input": "people.jsonl", "partition_bytes": 4096}
        job = (await fleet.gateway.post("/api/v1/jobs", json=body, headers=AUTH)).json()
        assert job["partitions"] >= 8
        view = await fleet.finished_job(job["id"])
        assert view["status"] == "succeeded", view
        assert view["partitions"] == {"total": job["partitions"], "done": job["partitions"], "failed": 0}
        assert view["rows"] == {"done": len(frame), "failed": 0}
        streamed = await fleet.gateway.get(f"/api/v1/jobs/{job['id']}/result", headers=AUTH)
        await asyncio.sleep(2.5)  # the runner's next sweep sets the jobs gauge
        metrics = (await fleet.gateway.get("/metrics")).text
        nodes_used = {node for node, path in fleet.upstream.calls if path == "/internal/v1/partitions"}
    rows = [orjson.loads(line) for line in streamed.content.splitlines()]
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    assert [r["id"] for r in rows] == list(range(len(frame)))
    assert [r["prediction"] for r in rows] == text_column_pipeline.predict(frame).tolist()
    output = tmp_path / "data" / "jobs" / job["id"]
    manifest = orjson.loads((output / "_manifest.json").read_bytes())
    assert manifest["rows"] == len(frame) and len(manifest["parts"]) == job["partitions"]
    assert (output / "_SUCCESS").exists()
    assert nodes_used == {"modelhost-1", "modelhost-2"}
    assert f"modelfleet_inferrer_job_rows_total {float(len(frame))}" in metrics
    assert 'modelfleet_inferrer_jobs_finished_total{status="succeeded"} 1.0' in metrics
    assert f'modelfleet_inferrer_job_partitions_total{{outcome="done"}} {float(job["partitions"])}' in metrics
    assert 'modelfleet_inferrer_jobs{status="succeeded"} 1.0' in metrics


async def test_bad_rows_fail_the_job_naming_them_or_are_skipped(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    lines = _people_jsonl(text_column_rows).splitlines(keepends=True)
    lines[2], lines[5], lines[9] = b"{broken\n", b'{"id": 5}\n', b"[1, 2]\n"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.jsonl").write_bytes(b"".join(lines))
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        failing = (
            await fleet.gateway.post(
                "/api/v1/jobs", json={"model": "people", "input": "bad.jsonl"}, headers=AUTH
            )
        ).json()
        failed = await fleet.finished_job(failing["id"])
        assert failed["status"] == "failed"
        assert (
            "3 bad rows" in failed["error"] and "line 3:" in failed["error"] and "line 10:" in failed["error"]
        )
        refused = await fleet.gateway.get(f"/api/v1/jobs/{failing['id']}/result", headers=AUTH)
        assert refused.status_code == 409
        body = {"model": "people", "input": "bad.jsonl", "on_bad_rows": "skip"}
        skipping = (await fleet.gateway.post("/api/v1/jobs", json=body, headers=AUTH)).json()
        done = await fleet.finished_job(skipping["id"])
    assert done["status"] == "succeeded", done
    assert done["rows"] == {"done": len(lines) - 3, "failed": 3}
    assert [e["line"] for e in done["errors"]] == [3, 6, 10]


async def test_a_cancelled_job_stays_cancelled(
    tmp_path: Path, pipeline_skops: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file job cancelled while its partition is on a node (the call held at the balancer until
    the test lets it go): cancelled at once, and still cancelled, with no `_SUCCESS`, once the node
    has answered."""
    rows = np.random.default_rng(3).normal(size=(10, 6)).round(3).tolist()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        arrived, release, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()
        request = fleet.upstream.request

        async def held(
            method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
        ) -> UpstreamAnswer:
            if path != "/internal/v1/partitions":
                return await request(method, path, body, timeout_s)
            arrived.set()
            await release.wait()
            try:
                return await request(method, path, body, timeout_s)
            finally:
                answered.set()

        monkeypatch.setattr(fleet.upstream, "request", held)
        await fleet.deploy("m", pipeline_skops)
        submitted = await fleet.gateway.post(
            "/api/v1/jobs", json={"model": "m", "input": "rows.jsonl"}, headers=AUTH
        )
        job_id = submitted.json()["id"]
        await asyncio.wait_for(arrived.wait(), 60)  # running: its partition is on the node
        cancelled = (await fleet.gateway.delete(f"/api/v1/jobs/{job_id}", headers=AUTH)).json()
        release.set()
        await asyncio.wait_for(answered.wait(), 60)
        for _ in range(600):  # until the runner has recorded the node's answer
            view = (await fleet.gateway.get(f"/api/v1/jobs/{job_id}", headers=AUTH)).json()
            if view["partitions"]["done"] == 1:
                break
            await asyncio.sleep(0.05)
        result = await fleet.gateway.get(f"/api/v1/jobs/{job_id}/result", headers=AUTH)
        listed = (await fleet.gateway.get("/api/v1/jobs?status=cancelled", headers=AUTH)).json()
    assert cancelled["status"] == "cancelled", cancelled
    assert view["partitions"]["done"] == 1, view  # the part was written and recorded...
    assert view["status"] == "cancelled" and view["error"] == "cancelled by request", view  # ...in vain
    assert result.status_code == 409
    assert not (tmp_path / "data" / "jobs" / job_id / "_SUCCESS").exists()
    assert [j["id"] for j in listed["jobs"]] == [job_id]


async def test_a_file_uploaded_with_the_job_is_its_input(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        rows = _people_jsonl(text_column_rows)
        fields = {"model": "people", "prediction": "predict_proba", "partition_bytes": "4096"}
        files = {"file": ("people.jsonl", rows)}
        answer = await fleet.gateway.post("/api/v1/jobs", data=fields, files=files, headers=AUTH)
        assert answer.status_code == 202, answer.text
        view = await fleet.finished_job(answer.json()["id"])
        assert view["status"] == "succeeded" and view["rows"]["done"] == len(text_column_rows)
        result = await fleet.gateway.get(f"/api/v1/jobs/{view['id']}/result", headers=AUTH)
        predictions = [orjson.loads(line)["prediction"] for line in result.content.splitlines()]
        assert predictions == text_column_pipeline.predict(text_column_rows).tolist()
        refused = [
            ({"model": "nope"}, {"file": ("people.jsonl", rows)}, 404),
            ({"model": "people", "input": "x.jsonl"}, {"file": ("people.jsonl", rows)}, 422),
            ({"model": "people"}, {"file": ("../evil.jsonl", rows)}, 422),
            ({"model": "people", "max_attempts": "many"}, {"file": ("people.jsonl", rows)}, 422),
            ({"model": ".."}, {"file": ("people.jsonl", rows)}, 422),
            (
                {"model": "people", "output": "predict", "prediction": "predict"},
                {"file": ("p.jsonl", rows)},
                422,
            ),
            ({"model": "people"}, {}, 400),  # a form without a file is not multipart: not JSON either
        ]
        for data, upload, status in refused:
            answer = await fleet.gateway.post("/api/v1/jobs", data=data, files=upload or None, headers=AUTH)
            assert answer.status_code == status, (data, answer.text)
    uploads = tmp_path / "data" / "uploads"
    assert len(list(uploads.iterdir())) == 1  # the accepted job's file; nothing left of the refused


async def test_a_parquet_file_is_split_by_row_group(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = pd.concat([text_column_rows] * 30, ignore_index=True).assign(id=lambda f: range(len(f)))
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "people.parquet", row_group_size=50)
    (tmp_path / "data" / "broken.parquet").write_bytes(b"PAR1 but not really")
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("people", sio.dumps(text_column_pipeline))
        body = {"model": "people", "input": "people.parquet"}
        job = (await fleet.gateway.post("/api/v1/jobs", json=body, headers=AUTH)).json()
        assert job["partitions"] == -(-len(frame) // 50)  # one per row group
        view = await fleet.finished_job(job["id"])
        assert view["status"] == "succeeded", view
        result = await fleet.gateway.get(f"/api/v1/jobs/{job['id']}/result", headers=AUTH)
        broken = await fleet.gateway.post(
            "/api/v1/jobs", json={**body, "input": "broken.parquet"}, headers=AUTH
        )
    rows = [orjson.loads(line) for line in result.content.splitlines()]  # JSON lines out
    assert [r["id"] for r in rows] == list(range(len(frame)))
    assert [r["prediction"] for r in rows] == text_column_pipeline.predict(frame).tolist()
    assert broken.status_code == 422 and "not a parquet file" in broken.json()["error"]


async def test_a_jobs_version_is_kept_from_retention_until_the_job_ends(
    tmp_path: Path, pipeline_skops: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeping one version, a job pinned to version 1 is held at the balancer (its partition call
    waits for the test) while versions 2 and 3 are deployed: 2 goes, 1 stays until the job ends,
    and then goes too."""
    rows = np.random.default_rng(7).normal(size=(20, 6)).round(3).tolist()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    async with in_process_fleet(tmp_path, nodes=1, keep_versions=1) as fleet:
        arrived, release = asyncio.Event(), asyncio.Event()
        request = fleet.upstream.request

        async def held(
            method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
        ) -> UpstreamAnswer:
            if path == "/internal/v1/partitions":
                arrived.set()
                await release.wait()
            return await request(method, path, body, timeout_s)

        monkeypatch.setattr(fleet.upstream, "request", held)

        async def versions() -> list[str]:
            view = (await fleet.gateway.get("/api/v1/models/m", headers=AUTH)).json()
            return sorted(v["version"] for v in view["versions"])

        await fleet.deploy("m", pipeline_skops)
        body = {"model": "m", "version": "1", "input": "rows.jsonl"}
        submitted = await fleet.gateway.post("/api/v1/jobs", json=body, headers=AUTH)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        await asyncio.wait_for(arrived.wait(), 60)  # the job is running, on version 1
        await fleet.deploy("m", pipeline_skops)
        await fleet.deploy("m", pipeline_skops)
        during = await versions()
        running = (await fleet.gateway.get(f"/api/v1/jobs/{job_id}", headers=AUTH)).json()["status"]
        release.set()
        view = await fleet.finished_job(job_id)
        after = during
        for _ in range(300):  # the job's end releases its pin and applies retention
            if (after := await versions()) != during:
                break
            await asyncio.sleep(0.05)
        stored = sorted(p.name for p in (tmp_path / "repository" / "models" / "m").iterdir())
    assert running == "running"
    assert during == ["1", "3"]  # 2 went at once; 1 is the job's
    assert view["status"] == "succeeded" and view["version"] == "1", view
    assert after == ["3"]
    assert [v for v in stored if v.isdigit()] == ["3"]
