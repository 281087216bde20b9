"""inferrer/api/sagemaker.py in-process, through the app factory: /ping follows the default model's
readiness, /invocations answers as predict does for CSV and JSON, and refuses other bodies with 415."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio

ROWS = [[0.1, -1.0, 2.0, 0.5, 1.5, -0.3], [1.0, 0.2, -0.7, 0.0, 0.4, 2.2]]
CSV = "\n".join(",".join(str(v) for v in row) for row in ROWS) + "\n"


async def test_ping_is_ready_only_with_the_default_model(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1, default_model="m") as fleet:
        assert (await fleet.gateway.get("/ping")).status_code == 503  # no default model deployed yet
        await fleet.deploy("m", pipeline_skops)
        ping = await fleet.gateway.get("/ping")
        assert ping.status_code == 200 and ping.json() == {"ready": True, "ready_nodes": ["modelhost-1"]}


async def test_invocations_answer_as_predict_in_csv_and_json(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1, default_model="m") as fleet:
        await fleet.deploy("m", pipeline_skops)
        await fleet.deploy("other", pipeline_skops)
        gateway = fleet.gateway
        online = (await gateway.post("/api/v1/models/m/predict", json={"instances": ROWS})).json()[
            "predictions"
        ]
        as_json = await gateway.post("/invocations", json={"instances": ROWS})
        assert as_json.status_code == 200 and as_json.json()["predictions"] == online
        as_csv = await gateway.post(
            "/invocations", content=CSV, headers={"content-type": "text/csv", "accept": "text/csv"}
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert [int(line) for line in as_csv.text.split()] == online
        targeted = await gateway.post(
            "/invocations", json={"instances": ROWS}, headers={"X-Amzn-SageMaker-Target-Model": "other"}
        )
        assert targeted.json()["model"] == "other"
        xml = await gateway.post(
            "/invocations", content="<rows/>", headers={"content-type": "application/xml"}
        )
        assert xml.status_code == 415 and "text/csv" in xml.json()["error"]
        unknown = await gateway.post(
            "/invocations", json={"instances": ROWS}, headers={"X-Amzn-SageMaker-Target-Model": "nope"}
        )
        assert unknown.status_code == 404


async def test_invocations_without_a_model_or_token_are_refused(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, inference_token="i" * 43) as fleet:
        await fleet.deploy("m", pipeline_skops)
        no_token = await fleet.gateway.post("/invocations", json={"instances": ROWS})
        assert no_token.status_code == 401
        no_model = await fleet.gateway.post("/invocations", json={"instances": ROWS}, headers=AUTH)
        assert no_model.status_code == 422 and "X-Amzn-SageMaker-Target-Model" in no_model.json()["error"]
