"""A node runs a batch job's partition (POST /internal/v1/partitions), in-process through the app
factories: it reads its byte range, predicts by feature name (the id and label carried, never fed),
and writes its output part whole; bad rows fail the partition or go to the errors part."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import skops.io as sio
from pydantic import ValidationError
from sklearn.pipeline import Pipeline

from datafiles.partitions import plan_lines
from tests.in_process import AUTH, InProcessFleet, in_process_fleet
from wire.partition_calls import partition_call

pytestmark = pytest.mark.anyio


def _jsonl(frame: pd.DataFrame) -> bytes:
    return b"".join(
        orjson.dumps({"id": i, **row, "label": i % 2}) + b"\n"
        for i, row in enumerate(frame.to_dict("records"))
    )


async def _run(
    fleet: InProcessFleet, manifest: dict[str, Any], data_dir: Path, name: str, fmt: str, **extra: Any
) -> list[Any]:
    data = (data_dir / name).read_bytes()
    plan = plan_lines(io.BytesIO(data), len(data), 600, has_header=fmt == "csv")
    assert len(plan.ranges) > 3
    answers = []
    node = fleet.nodes["modelhost-1"]
    for i, byte_range in enumerate(plan.ranges):
        call = {
            "job_id": "job-1", "partition": i, "model": "people", "version": manifest["version"],
            "sha256": manifest["sha256"], "input": name, "format": fmt, "start": byte_range.start,
            "end": byte_range.end, "output_part": f"out/{name}/part-{i:05d}.{fmt}",
            "errors_part": f"out/{name}/_errors/part-{i:05d}.jsonl", "chunk_rows": 7,
            "header": plan.header.decode().split(",") if plan.header else None, **extra,
        }  # fmt: skip
        answers.append(await node.post("/internal/v1/partitions", json=call, headers=AUTH))
    return answers


async def test_jsonl_partitions_predict_by_feature_name_and_carry_the_rest(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = pd.concat([text_column_rows] * 10, ignore_index=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.jsonl").write_bytes(_jsonl(frame))
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest = await fleet.deploy("people", sio.dumps(text_column_pipeline))
        answers = await _run(
            fleet, manifest, tmp_path / "data", "people.jsonl", "jsonl", output="predict_proba"
        )
        assert [a.status_code for a in answers] == [200] * len(answers), answers[0].text
        parts = sorted((tmp_path / "data" / "out" / "people.jsonl").glob("part-*"))
        rows = [orjson.loads(line) for part in parts for line in part.read_bytes().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(frame)))  # every row once, in order
    assert [r["prediction"] for r in rows] == text_column_pipeline.predict(frame).tolist()
    proba = text_column_pipeline.predict_proba(frame)
    assert all(abs(r["probabilities"][1] - p[1]) < 1e-12 for r, p in zip(rows, proba, strict=True))
    assert rows[3]["label"] == 1 and rows[3]["city"] == frame["city"][3]  # carried as they came
    assert sum(a.json()["rows"] for a in answers) == len(frame)


async def test_csv_partitions_keep_each_line_and_add_the_prediction(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    frame = pd.concat([text_column_rows] * 10, ignore_index=True)
    frame.insert(0, "id", range(len(frame)))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.csv").write_text(frame.to_csv(index=False))
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest = await fleet.deploy("people", sio.dumps(text_column_pipeline))
        answers = await _run(fleet, manifest, tmp_path / "data", "people.csv", "csv")
        assert {a.status_code for a in answers} == {200}, answers[0].text
        parts = sorted((tmp_path / "data" / "out" / "people.csv").glob("part-*"))
    records = [row for part in parts for row in list(csv.DictReader(io.StringIO(part.read_text())))]
    assert [int(r["id"]) for r in records] == frame["id"].tolist()
    assert [int(r["prediction"]) for r in records] == text_column_pipeline.predict(frame).tolist()


async def test_bad_rows_fail_the_partition_or_are_skipped_to_the_errors_part(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    good = _jsonl(text_column_rows).splitlines(keepends=True)
    data = b"".join([good[0], b"not json\n", good[1], b'{"id": 99, "age": 30}\n', good[2]])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.jsonl").write_bytes(data)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest = await fleet.deploy("people", sio.dumps(text_column_pipeline))
        node = fleet.nodes["modelhost-1"]
        call = {
            "job_id": "job-2", "partition": 0, "model": "people", "version": manifest["version"],
            "sha256": manifest["sha256"], "input": "bad.jsonl", "format": "jsonl", "start": 0,
            "end": len(data), "output_part": "out/bad/part-00000.jsonl",
            "errors_part": "out/bad/_errors/part-00000.jsonl",
        }  # fmt: skip
        failed = await node.post("/internal/v1/partitions", json=call, headers=AUTH)
        assert failed.status_code == 422
        assert "2 bad rows" in failed.json()["error"] and "line 2: not a JSON value" in failed.json()["error"]
        assert "line 4: missing feature 'income'" in failed.json()["error"]
        assert not (tmp_path / "data" / "out").exists()  # nothing written
        skipped = await node.post(
            "/internal/v1/partitions", json={**call, "on_bad_rows": "skip"}, headers=AUTH
        )
        assert skipped.status_code == 200, skipped.text
        assert skipped.json()["rows"] == 3
        assert [b["line"] for b in skipped.json()["bad_rows"]] == [2, 4]
        errors = (
            (tmp_path / "data" / "out" / "bad" / "_errors" / "part-00000.jsonl").read_bytes().splitlines()
        )
        assert [orjson.loads(e)["row"] for e in errors] == ["not json", '{"id": 99, "age": 30}']
        outside = await node.post(
            "/internal/v1/partitions", json={**call, "input": "../secret"}, headers=AUTH
        )
        assert outside.status_code == 422 and "no '..'" in outside.json()["error"]
        missing = await node.post(
            "/internal/v1/partitions", json={**call, "input": "nope.jsonl"}, headers=AUTH
        )
        assert missing.status_code == 404
        refused = b'{"id": 1, "age": "old", "income": 1, "city": "oslo"}\n'  # the model refuses it
        (tmp_path / "data" / "one.jsonl").write_bytes(refused)
        alone = {**call, "input": "one.jsonl", "end": len(refused), "on_bad_rows": "skip", "chunk_rows": 1}
        alone |= {
            "output_part": "out/one/part-00000.jsonl",
            "errors_part": "out/one/_errors/part-00000.jsonl",
        }
        skipped_alone = await node.post("/internal/v1/partitions", json=alone, headers=AUTH)
        assert skipped_alone.status_code == 200, skipped_alone.text  # a chunk of one bad row: skipped
        assert skipped_alone.json()["rows"] == 0 and [
            b["line"] for b in skipped_alone.json()["bad_rows"]
        ] == [1]
        unauthorised = await node.post("/internal/v1/partitions", json=call)
        assert unauthorised.status_code == 401


@pytest.mark.parametrize("field", ["job_id", "model", "version"])
@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_a_partition_call_names_no_path_but_one_segment(field: str, name: str) -> None:
    call = {
        "job_id": "job-1", "partition": 0, "model": "m", "version": "1", "sha256": "0" * 64,
        "input": "in.jsonl", "format": "jsonl", "output_part": "out/p", "errors_part": "out/e",
    }  # fmt: skip
    assert partition_call.validate_python(call).job_id == "job-1"
    with pytest.raises(ValidationError):
        partition_call.validate_python({**call, field: name})
