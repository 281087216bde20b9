"""Job requests the gateway refuses, in-process: each answered 4xx with nothing created; an output
the model lacks or another job's output location; the deprecated name of `prediction`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LinearRegression

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_refusals_change_nothing(tmp_path: Path, pipeline_skops: bytes) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "outside.jsonl").write_text("[1, 2, 3, 4, 5, 6]\n")
    (tmp_path / "data" / "link.jsonl").symlink_to(tmp_path / "outside.jsonl")
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", pipeline_skops)
        gateway = fleet.gateway
        for location in (
            "../outside.jsonl",
            str(tmp_path / "outside.jsonl"),
            "link.jsonl",
            "a/../../x.jsonl",
        ):
            answer = await gateway.post("/api/v1/jobs", json={"model": "m", "input": location}, headers=AUTH)
            assert answer.status_code == 400, (location, answer.text)
        cases = [
            ({"model": "m", "input": "missing.jsonl"}, 404),
            ({"model": "nope", "instances": [[1, 2, 3, 4, 5, 6]]}, 404),
            ({"model": "m", "instances": [[1, 2]]}, 422),
            ({"model": "m", "instances": [[1, 2, 3, 4, 5, 6]], "input": "x.jsonl"}, 422),
            ({"model": "m"}, 422),
            ({"model": "m", "input": "x.txt"}, 422),
            ({"model": "m", "input": "link.jsonl", "output_location": "x"}, 400),
            ({"model": "..", "instances": [[1, 2, 3, 4, 5, 6]]}, 422),  # one path segment, never ".."
            ({"model": "m", "version": "..", "instances": [[1, 2, 3, 4, 5, 6]]}, 422),
            (
                {
                    "model": "m",
                    "instances": [[1, 2, 3, 4, 5, 6]],
                    "output": "predict",
                    "prediction": "predict",
                },
                422,
            ),
            ({"model": "m", "input": "x.jsonl", "format": "jsonl", "output_format": "csv"}, 422),
        ]
        for body, status in cases:
            answer = await gateway.post("/api/v1/jobs", json=body, headers=AUTH)
            assert answer.status_code == status, (body, answer.text)
        assert (await gateway.get("/api/v1/jobs", headers=AUTH)).json() == {"jobs": []}
        (tmp_path / "data" / "rows.jsonl").write_text("[1, 2, 3, 4, 5, 6]\n")
        (tmp_path / "data" / "taken").mkdir()
        (tmp_path / "data" / "taken" / "part-00000.jsonl").write_text("someone else's\n")
        body = {"model": "m", "input": "rows.jsonl", "output_location": "taken"}
        assert (await gateway.post("/api/v1/jobs", json=body, headers=AUTH)).status_code == 409
        body["output_location"] = "rows.jsonl"  # not over its own input either
        assert (await gateway.post("/api/v1/jobs", json=body, headers=AUTH)).status_code == 409
        assert (tmp_path / "data" / "taken" / "part-00000.jsonl").read_text() == "someone else's\n"
        assert (await gateway.get("/api/v1/jobs/job-nope", headers=AUTH)).status_code == 404
        for job_id in ("..", "."):  # as a path's segment, escaped: still no job id
            assert (await gateway.get(f"/api/v1/jobs/%2E{job_id[1:]}", headers=AUTH)).status_code in (
                404,
                422,
            )


async def test_an_output_the_model_lacks_or_a_shared_output_location_is_refused(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    features = np.random.default_rng(2).normal(size=(40, 6))
    regressor = sio.dumps(LinearRegression().fit(features, features[:, 0]))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("[1, 2, 3, 4, 5, 6]\n" * 10)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("r", regressor)
        await fleet.deploy("m", pipeline_skops)
        gateway = fleet.gateway
        for body in (
            {"model": "r", "input": "rows.jsonl", "prediction": "predict_proba"},
            {"model": "r", "instances": [[1, 2, 3, 4, 5, 6]], "prediction": "predict_proba"},
        ):
            answer = await gateway.post("/api/v1/jobs", json=body, headers=AUTH)
            assert answer.status_code == 422 and "offers" in answer.text, answer.text
        body = {"model": "m", "input": "rows.jsonl", "output_location": "shared"}
        first = await gateway.post("/api/v1/jobs", json=body, headers=AUTH)
        second = await gateway.post("/api/v1/jobs", json=body, headers=AUTH)
        assert first.status_code == 202 and second.status_code == 409, second.text
        assert (await fleet.finished_job(first.json()["id"]))["status"] == "succeeded"


async def test_the_old_name_of_prediction_is_taken_with_a_deprecation_note(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("[1, 2, 3, 4, 5, 6]\n" * 3)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", pipeline_skops)
        gateway = fleet.gateway
        old = {"model": "m", "instances": [[1, 2, 3, 4, 5, 6]], "output": "predict_proba"}
        inline = await gateway.post("/api/v1/jobs", json=old, headers=AUTH)
        form = {"model": "m", "output": "predict_proba"}
        upload = {"file": ("rows.jsonl", b"[1, 2, 3, 4, 5, 6]\n")}
        uploaded = await gateway.post("/api/v1/jobs", data=form, files=upload, headers=AUTH)
        current = await gateway.post("/api/v1/jobs", json={"model": "m", "input": "rows.jsonl"}, headers=AUTH)
        views = [await fleet.finished_job(answer.json()["id"]) for answer in (inline, uploaded, current)]
        result = (await gateway.get(f"/api/v1/jobs/{inline.json()['id']}/result", headers=AUTH)).json()
        online = {"instances": old["instances"], "output": "predict_proba"}
        expected = (await gateway.post("/api/v1/models/m/predict", json=online)).json()["predictions"]
    warning = "299 - \"field 'output' is deprecated; use 'prediction'\""
    for answer in (inline, uploaded):
        assert answer.status_code == 202, answer.text
        assert answer.headers["deprecation"] == "true" and answer.headers["warning"] == warning
    assert current.status_code == 202 and "deprecation" not in current.headers
    assert [v["prediction"] for v in views] == ["predict_proba", "predict_proba", "predict"]
    assert all(v["status"] == "succeeded" for v in views), views
    assert result["predictions"] == expected  # each class's probability: predict_proba
