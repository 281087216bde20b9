"""inferrer/api/v2.py in-process, through the app factory: the Open Inference Protocol's health,
metadata, infer and repository routes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from artifacts.onnx_conversion import TOLERANCE
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_infer_metadata_and_the_repository_extension(
    tmp_path: Path, pipeline: Pipeline, pipeline_skops: bytes, training_data: tuple[np.ndarray, np.ndarray]
) -> None:
    rows = training_data[0][:3]
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("m", pipeline_skops)
        gateway = fleet.gateway
        assert (await gateway.get("/v2/health/ready")).json() == {"ready": True}
        assert (await gateway.get("/v2/models/m/ready", headers=AUTH)).json()["ready"] is True
        metadata = (await gateway.get("/v2/models/m", headers=AUTH)).json()
        assert metadata["inputs"][0]["shape"] == [-1, 6] and metadata["versions"] == ["1"]
        tensor = {"name": "input-0", "shape": [3, 6], "datatype": "FP64", "data": rows.ravel().tolist()}
        inferred = await gateway.post(
            "/v2/models/m/infer",
            headers=AUTH,
            json={
                "id": "r-1",
                "inputs": [tensor],
                "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
            },
        )
        body = inferred.json()
        assert (body["id"], body["model_version"]) == ("r-1", "1")
        predicted, proba = body["outputs"]
        assert predicted["data"] == pipeline.predict(rows).tolist() and proba["shape"] == [3, 2]
        # Compiled to ONNX (runtime=auto): within the verified tolerance of scikit-learn.
        np.testing.assert_allclose(
            np.reshape(proba["data"], (3, 2)), pipeline.predict_proba(rows), atol=TOLERANCE
        )

        bad = await gateway.post("/v2/models/m/infer", headers=AUTH, json={"inputs": []})
        assert bad.status_code == 400 and bad.json()["error"]

        released = (await gateway.post("/v2/repository/models/m/unload", headers=AUTH)).json()
        assert released == {"name": "m", "nodes_unloaded": ["modelhost-1", "modelhost-2"]}
        index = (await gateway.post("/v2/repository/index", headers=AUTH)).json()
        assert [e["state"] for e in index] == ["UNAVAILABLE"]
        loaded = (await gateway.post("/v2/repository/models/m/load", headers=AUTH)).json()
        assert loaded == {"name": "m", "version": "1", "nodes_loaded": ["modelhost-1", "modelhost-2"]}
        index = (await gateway.post("/v2/repository/index", headers=AUTH)).json()
        assert [e["state"] for e in index] == ["READY"]
        missing = await gateway.post("/v2/repository/models/none/unload", headers=AUTH)
        assert missing.status_code == 404
