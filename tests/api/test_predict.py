"""inferrer/api/predict.py in-process, through the app factory: JSON and CSV in and out, the active
version or a pinned one, refusals before any node is called."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from artifacts.onnx_conversion import TOLERANCE
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_json_and_csv_predictions_equal_the_model_in_process(
    tmp_path: Path, pipeline: Pipeline, pipeline_skops: bytes, training_data: tuple[np.ndarray, np.ndarray]
) -> None:
    rows = training_data[0][:5]
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("m", pipeline_skops)
        gateway = fleet.gateway
        answer = await gateway.post(
            "/api/v1/models/m/predict", headers=AUTH, json={"instances": rows.tolist()}
        )
        body = answer.json()
        assert body["predictions"] == pipeline.predict(rows).tolist()
        assert (body["model"], body["version"]) == ("m", "1")
        assert answer.headers["x-modelhost-node"] == body["node"] in fleet.nodes
        proba = await gateway.post(
            "/api/v1/models/m/versions/1/predict",
            headers=AUTH,
            json={"instances": rows.tolist(), "output": "predict_proba"},
        )
        # Compiled to ONNX (runtime=auto): within the verified tolerance of scikit-learn.
        np.testing.assert_allclose(proba.json()["predictions"], pipeline.predict_proba(rows), atol=TOLERANCE)
        csv_rows = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
        as_csv = await gateway.post(
            "/api/v1/models/m/predict",
            headers={**AUTH, "content-type": "text/csv", "accept": "text/csv"},
            content=csv_rows,
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.text.split() == [str(p) for p in pipeline.predict(rows)]


async def test_bad_requests_are_refused_before_any_node_is_called(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    async with in_process_fleet(tmp_path, nodes=1, max_rows=3, inference_token="i" * 43) as fleet:
        await fleet.deploy("m", pipeline_skops)
        fleet.upstream.calls.clear()
        cases = [
            ("/api/v1/models/m/predict", b"{not json", 400),
            ("/api/v1/models/m/predict", b'{"instances": [[1, 2]]}', 422),  # 2 features, not 6
            ("/api/v1/models/m/predict", b'{"instances": [[1, 2, 3, 4, 5, "x"]]}', 422),
            ("/api/v1/models/m/predict", b'{"instances": [[0, 0, 0, 0, 0, 0]], "output": "nope"}', 422),
            (
                "/api/v1/models/m/predict",
                b'{"instances": [' + b",".join([b"[0, 0, 0, 0, 0, 0]"] * 4) + b"]}",
                413,
            ),
            ("/api/v1/models/none/predict", b'{"instances": [[0, 0, 0, 0, 0, 0]]}', 404),
            ("/api/v1/models/m/versions/9/predict", b'{"instances": [[0, 0, 0, 0, 0, 0]]}', 404),
        ]
        for path, body, status in cases:
            answer = await fleet.gateway.post(path, headers=AUTH, content=body)
            assert answer.status_code == status, (path, body, answer.text)
            assert answer.json()["error"]
        infinite = await fleet.gateway.post(
            "/api/v1/models/m/predict", headers={**AUTH, "content-type": "text/csv"}, content="inf,0,0,0,0,0"
        )
        assert infinite.status_code == 422 and "infinite" in infinite.json()["error"]
        unauthenticated = await fleet.gateway.post("/api/v1/models/m/predict", json={"instances": [[0] * 6]})
        assert unauthenticated.status_code == 401
        assert fleet.upstream.calls == []
